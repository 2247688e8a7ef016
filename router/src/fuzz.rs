//! Property tests ("fuzzing") of the `/call` JSON path: any body, and any
//! JSON `params` against any overload set, must be answered with a result or
//! an error, never a panic. `PROPTEST_CASES=N` runs more cases.

use proptest::prelude::*;
use serde_json::Value;

use crate::call::fuzz_entry;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn call_body_parsing_survives_random_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        fuzz_entry(&body);
    }

    #[test]
    fn call_params_survive_any_json(params in json_value(), function in "[a-z]{1,6}(\\.[a-z]{1,6})?") {
        let body = serde_json::json!({"platform": "app", "function": function, "params": params});
        fuzz_entry(body.to_string().as_bytes());
    }
}
