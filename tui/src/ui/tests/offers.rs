//! The offers view: the query line being edited.

use super::*;

#[test]
fn snapshot_offers_query() {
    let mut app = app_with(sample_runs());
    typ(&mut app, ":offers");
    press(&mut app, "enter");
    let list: flotilla_protocol::rpc::OfferList = serde_json::from_value(serde_json::json!({
        "offers": [{
            "backend": "local", "region": "local", "instance_type": "local-0",
            "resources": {"cpu":{"arch":null,"count":{"min":16,"max":16}},"memory":{"min":64.0,"max":64.0},"disk":{"size":{"min":500.0,"max":500.0}},"shm_size":null,"gpu":{"vendor":"nvidia","name":["A100"],"count":{"min":2,"max":2},"memory":{"min":80.0,"max":80.0},"total_memory":null,"compute_capability":null}},
            "price": 0.0, "spot": false, "availability": "idle"
        }],
        "total": 1, "warnings": []
    }))
    .expect("offer fixture");
    app.handle_msg(Msg::Offers(Ok(list)));
    press(&mut app, "e");
    typ(&mut app, "A100");
    insta::assert_snapshot!(screen(&mut app, 100, 12));
}
