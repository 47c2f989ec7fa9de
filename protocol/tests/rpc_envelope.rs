//! The JSON-RPC envelope: ids come back exactly as sent, bad lines get the errors of before, and
//! the client tells responses from notifications.

use flotilla_protocol::rpc::{codes, parse_request, RequestId, Response, ServerMessage};
use serde_json::json;

#[test]
fn an_id_beyond_64_bits_comes_back_exactly_as_sent() {
    let line = br#"{"jsonrpc":"2.0","id": 123456789012345678901234567890,"method":"run.list","params":{}}"#;
    let req = parse_request(line).expect("a valid request");
    let id = req.id.expect("an id");
    let reply = serde_json::to_string(&Response::ok(id, json!([]))).expect("serialises");
    assert_eq!(
        reply,
        r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"result":[]}"#
    );
    // Strings, negative and fractional numbers too.
    for id in [r#""abc-1""#, "-17", "1.5e3", "18446744073709551616"] {
        let line = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"x"}}"#);
        let req = parse_request(line.as_bytes()).expect("valid");
        assert_eq!(req.id.as_ref().map(RequestId::as_json), Some(id));
    }
}

#[test]
fn an_error_answer_keeps_the_id_too() {
    let line = br#"{"jsonrpc":"1.0","id":123456789012345678901234567890,"method":"run.list"}"#;
    let (id, err) = parse_request(line).expect_err("wrong version");
    assert_eq!(err.code, codes::INVALID_REQUEST);
    assert_eq!(err.message, "`jsonrpc` must be \"2.0\"");
    let reply = serde_json::to_string(&Response::err(id, err)).expect("serialises");
    assert!(
        reply.contains(r#""id":123456789012345678901234567890"#),
        "{reply}"
    );
}

#[test]
fn bad_lines_get_the_errors_of_before() {
    let (id, err) = parse_request(b"{not json").expect_err("not JSON");
    assert_eq!((id.as_json(), err.code), ("null", codes::PARSE_ERROR));
    assert!(
        err.message.starts_with("not valid JSON: "),
        "{}",
        err.message
    );
    let (id, err) =
        parse_request(br#"{"jsonrpc":"2.0","id":[1],"method":"x"}"#).expect_err("array id");
    assert_eq!((id.as_json(), err.code), ("null", codes::INVALID_REQUEST));
    assert_eq!(err.message, "`id` must be a number or a string");
    let (id, err) =
        parse_request(br#"{"jsonrpc":"2.0","id":5,"params":{}}"#).expect_err("no method");
    assert_eq!((id.as_json(), err.code), ("5", codes::INVALID_REQUEST));
    assert!(
        err.message
            .starts_with("not a JSON-RPC 2.0 request (missing field `method`); expected "),
        "{}",
        err.message
    );
    // A notification (no id) is a request without one.
    let req = parse_request(br#"{"jsonrpc":"2.0","method":"x"}"#).expect("valid");
    assert!(req.id.is_none() && req.params.is_none());
}

#[test]
fn the_client_tells_responses_from_notifications() {
    let msg: ServerMessage =
        serde_json::from_str(r#"{"jsonrpc":"2.0","id":3,"result":{"a":1}}"#).expect("response");
    let ServerMessage::Response(r) = msg else {
        panic!("not a response: {msg:?}")
    };
    assert_eq!((r.id.as_u64(), r.result), (Some(3), Some(json!({"a": 1}))));
    let msg: ServerMessage = serde_json::from_str(
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"not valid JSON"}}"#,
    )
    .expect("error response");
    assert!(
        matches!(msg, ServerMessage::Response(r) if r.error.is_some() && r.id.as_json() == "null")
    );
    let msg: ServerMessage =
        serde_json::from_str(r#"{"jsonrpc":"2.0","method":"event","params":{"id":3,"event":{}}}"#)
            .expect("notification");
    assert!(
        matches!(msg, ServerMessage::Notification(n) if n.method == "event" && n.params["id"] == 3)
    );
    assert!(serde_json::from_str::<ServerMessage>(r#"{"jsonrpc":"2.0"}"#).is_err());
}
