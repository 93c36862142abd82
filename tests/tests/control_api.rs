//! Every control-socket endpoint through the real socket of an in-process
//! edge: the happy path, and the refusals (status, error code, the field
//! named), each followed by a check that the refused write changed nothing.

use edge_tests::chain::{RunningEdge, o2o_state};
use edge_tests::control::{Control, check_refusal};
use edge_tests::proxy::spawn_echo;
use http::{Method, StatusCode};
use serde_json::{Value, json};

const VALIDATION: u64 = 1004;
const MALFORMED: u64 = 6007;
const TOO_LARGE: u64 = 6008;
const NO_ROUTE: u64 = 7000;
const METHOD: u64 = 7001;
const NOT_FOUND: u64 = 7003;

async fn start() -> (RunningEdge, Control) {
    let echo = spawn_echo().await.unwrap();
    let edge = RunningEdge::start(o2o_state(echo)).await.unwrap();
    let control = Control::new(&edge.control);
    (edge, control)
}

async fn export(control: &Control) -> Value {
    control.ok(Method::GET, "/state", None).await
}

#[tokio::test]
async fn zones_create_list_get_by_id_or_name_and_delete() {
    let (edge, control) = start().await;
    let created = control
        .ok(
            Method::POST,
            "/zones",
            Some(json!({"name": "newzone.test", "account": {"id": "acct-new"}})),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32, "{created}");
    assert_eq!(created["name"], "newzone.test");
    assert_eq!(created["account"]["id"], "acct-new");

    let list = control.ok(Method::GET, "/zones", None).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["example.com", "saasprovider.com", "newzone.test"]);
    let filtered = control
        .ok(Method::GET, "/zones?name=newzone.test", None)
        .await;
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    assert_eq!(
        control.ok(Method::GET, &format!("/zones/{id}"), None).await,
        created
    );
    assert_eq!(
        control.ok(Method::GET, "/zones/NewZone.test", None).await,
        created
    );

    let before = export(&control).await;
    control
        .refused(
            Method::POST,
            "/zones",
            Some(json!({"name": "example.com", "account": {"id": "acct-new"}})),
            StatusCode::BAD_REQUEST,
            VALIDATION,
            "`name` `example.com` is already zone",
        )
        .await;
    control
        .refused(
            Method::POST,
            "/zones",
            Some(json!({"name": "1.2.3.4", "account": {"id": "a"}})),
            StatusCode::BAD_REQUEST,
            VALIDATION,
            "`name`",
        )
        .await;
    control
        .refused(
            Method::POST,
            "/zones",
            Some(json!({"account": {"id": "a"}})),
            StatusCode::BAD_REQUEST,
            MALFORMED,
            "missing field `name`",
        )
        .await;
    control
        .refused(
            Method::POST,
            "/zones",
            Some(json!({"name": "x.test", "account": {"id": "a"}, "type": "full"})),
            StatusCode::BAD_REQUEST,
            MALFORMED,
            "unknown field `type`",
        )
        .await;
    control
        .refused(
            Method::GET,
            "/zones/nothere.test",
            None,
            StatusCode::NOT_FOUND,
            NOT_FOUND,
            "nothere.test",
        )
        .await;
    control
        .refused(
            Method::PUT,
            "/zones",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            METHOD,
            "PUT",
        )
        .await;
    control
        .refused(
            Method::GET,
            "/zonez",
            None,
            StatusCode::NOT_FOUND,
            NO_ROUTE,
            "/zonez",
        )
        .await;
    assert_eq!(
        export(&control).await,
        before,
        "refused writes changed nothing"
    );

    let deleted = control
        .ok(Method::DELETE, "/zones/newzone.test", None)
        .await;
    assert_eq!(deleted["id"], id);
    control
        .refused(
            Method::GET,
            &format!("/zones/{id}"),
            None,
            StatusCode::NOT_FOUND,
            NOT_FOUND,
            &id,
        )
        .await;
    edge.stop().await.unwrap();
}

#[tokio::test]
async fn dns_records_create_list_get_patch_delete_and_refusals_name_the_field() {
    let (edge, control) = start().await;
    let path = "/zones/example.com/dns_records";
    let created = control
        .ok(
            Method::POST,
            path,
            Some(json!({"type": "A", "name": "www", "content": "192.0.2.10", "proxied": true})),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created["name"], "www.example.com",
        "relative names are in the zone"
    );
    assert_eq!(created["zone_id"], "zone-customer");
    assert_eq!(created["ttl"], 1);

    let all = control.ok(Method::GET, path, None).await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let by_name = control
        .ok(Method::GET, &format!("{path}?name=www.example.com"), None)
        .await;
    assert_eq!(by_name.as_array().unwrap().len(), 1);
    let by_type = control
        .ok(Method::GET, &format!("{path}?type=CNAME"), None)
        .await;
    assert_eq!(by_type[0]["name"], "mystore.example.com");
    assert_eq!(
        control.ok(Method::GET, &format!("{path}/{id}"), None).await,
        created
    );

    let patched = control
        .ok(
            Method::PATCH,
            &format!("{path}/{id}"),
            Some(json!({"content": "192.0.2.11", "ttl": 300})),
        )
        .await;
    assert_eq!(patched["content"], "192.0.2.11");
    assert_eq!(patched["ttl"], 300);
    assert_eq!(patched["proxied"], true, "unpatched fields stay");

    let before = export(&control).await;
    control
        .refused(
            Method::POST,
            path,
            Some(json!({"type": "A", "name": "bad", "content": "192.0.2"})),
            StatusCode::BAD_REQUEST,
            VALIDATION,
            "`content` `192.0.2` is not an IPv4 address",
        )
        .await;
    control
        .refused(
            Method::POST,
            path,
            Some(json!({"type": "MX", "name": "m", "content": "x"})),
            StatusCode::BAD_REQUEST,
            MALFORMED,
            "unknown variant `MX`",
        )
        .await;
    control
        .refused(
            Method::POST,
            path,
            Some(json!({"type": "A", "name": "www", "content": "192.0.2.1"})),
            StatusCode::BAD_REQUEST,
            VALIDATION,
            "another record of the zone is named `www.example.com`",
        )
        .await;
    control
        .refused(
            Method::PATCH,
            &format!("{path}/{id}"),
            Some(json!({"id": "other"})),
            StatusCode::BAD_REQUEST,
            MALFORMED,
            "`id` cannot be patched",
        )
        .await;
    control
        .refused(
            Method::PATCH,
            &format!("{path}/{id}"),
            Some(json!({"ttl": 5})),
            StatusCode::BAD_REQUEST,
            VALIDATION,
            "`ttl`",
        )
        .await;
    control
        .refused(
            Method::GET,
            &format!("{path}/nope"),
            None,
            StatusCode::NOT_FOUND,
            NOT_FOUND,
            "no DNS record `nope`",
        )
        .await;
    // The provider's fallback origin is this record: deleting it is refused.
    control
        .refused(
            Method::DELETE,
            "/zones/saasprovider.com/dns_records/r3",
            None,
            StatusCode::BAD_REQUEST,
            VALIDATION,
            "fallback_origin.origin",
        )
        .await;
    assert_eq!(
        export(&control).await,
        before,
        "refused writes changed nothing"
    );

    assert_eq!(
        control
            .ok(Method::DELETE, &format!("{path}/{id}"), None)
            .await["id"],
        id
    );
    control
        .refused(
            Method::DELETE,
            &format!("{path}/{id}"),
            None,
            StatusCode::NOT_FOUND,
            NOT_FOUND,
            &id,
        )
        .await;
    edge.stop().await.unwrap();
}

#[tokio::test]
async fn custom_hostnames_carry_status_and_verification_and_filter_by_hostname() {
    let (edge, control) = start().await;
    let path = "/zones/saasprovider.com/custom_hostnames";
    // The customer's DNS is not on this edge: pending, with both ways to pre-validate.
    let pending = control
        .ok(
            Method::POST,
            path,
            Some(json!({"hostname": "shop.elsewhere.test", "custom_metadata": {"tier": "gold"}})),
        )
        .await;
    let id = pending["id"].as_str().unwrap().to_owned();
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["verification_errors"], json!([]));
    let token = pending["ownership_verification"]["value"].as_str().unwrap();
    assert_eq!(pending["ownership_verification"]["type"], "txt");
    assert_eq!(
        pending["ownership_verification"]["name"],
        "_cf-custom-hostname.shop.elsewhere.test"
    );
    assert_eq!(
        pending["ownership_verification_http"],
        json!({
            "http_url": format!("http://shop.elsewhere.test/.well-known/cf-custom-hostname-challenge/{id}"),
            "http_body": token,
        })
    );

    // On this edge, pointing elsewhere: pending, and the reason is given.
    control
        .ok(
            Method::POST,
            "/zones/example.com/dns_records",
            Some(json!({"type": "A", "name": "blog", "content": "192.0.2.7"})),
        )
        .await;
    let elsewhere = control
        .ok(
            Method::POST,
            path,
            Some(json!({"hostname": "blog.example.com"})),
        )
        .await;
    assert_eq!(elsewhere["status"], "pending");
    assert!(
        elsewhere["verification_errors"][0]
            .as_str()
            .unwrap()
            .contains("resolves to 192.0.2.7"),
        "{elsewhere}"
    );

    let list = control.ok(Method::GET, path, None).await;
    assert_eq!(list.as_array().unwrap().len(), 4);
    let filtered = control
        .ok(
            Method::GET,
            &format!("{path}?hostname=SHOP.elsewhere.test"),
            None,
        )
        .await;
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    assert_eq!(filtered[0]["id"], id);
    assert_eq!(
        control.ok(Method::GET, &format!("{path}/{id}"), None).await,
        pending
    );

    let patched = control
        .ok(
            Method::PATCH,
            &format!("{path}/{id}"),
            Some(json!({"custom_metadata": null, "ssl": {"settings": {"min_tls_version": "1.3"}}})),
        )
        .await;
    assert!(patched.get("custom_metadata").is_none(), "{patched}");
    assert_eq!(patched["ssl"]["settings"]["min_tls_version"], "1.3");
    assert_eq!(
        patched["ownership_verification"]["value"], token,
        "the token stays"
    );

    let before = export(&control).await;
    for (body, field) in [
        (json!({"hostname": "192.0.2.1"}), "`hostname`"),
        (
            json!({"hostname": "saasprovider.com"}),
            "the zone's own apex",
        ),
        (
            json!({"hostname": "shop.elsewhere.test"}),
            "is already custom hostname",
        ),
        (
            json!({"hostname": "x.test", "custom_origin_server": "nothere.saasprovider.com"}),
            "`custom_origin_server`",
        ),
        (
            json!({"hostname": "*.wild.test", "custom_metadata": {"a": 1}}),
            "`custom_metadata`",
        ),
        (
            json!({"hostname": "big.test", "custom_metadata": {"a": "x".repeat(5000)}}),
            "at most 4096",
        ),
    ] {
        control
            .refused(
                Method::POST,
                path,
                Some(body),
                StatusCode::BAD_REQUEST,
                VALIDATION,
                field,
            )
            .await;
    }
    control
        .refused(
            Method::POST,
            path,
            Some(json!({"hostname": "x.test", "status": "active"})),
            StatusCode::BAD_REQUEST,
            MALFORMED,
            "unknown field `status`",
        )
        .await;
    control
        .refused(
            Method::PATCH,
            &format!("{path}/{id}"),
            Some(json!({"status": "active"})),
            StatusCode::BAD_REQUEST,
            MALFORMED,
            "`status` cannot be patched",
        )
        .await;
    assert_eq!(
        export(&control).await,
        before,
        "refused writes changed nothing"
    );

    assert_eq!(
        control
            .ok(Method::DELETE, &format!("{path}/{id}"), None)
            .await["id"],
        id
    );
    let empty = control
        .ok(
            Method::GET,
            &format!("{path}?hostname=shop.elsewhere.test"),
            None,
        )
        .await;
    assert_eq!(empty, json!([]));
    edge.stop().await.unwrap();
}

#[tokio::test]
async fn fallback_origin_get_put_delete() {
    let (edge, control) = start().await;
    let path = "/zones/saasprovider.com/custom_hostnames/fallback_origin";
    assert_eq!(
        control.ok(Method::GET, path, None).await,
        json!({"origin": "origin.saasprovider.com", "status": "active"})
    );
    control
        .ok(
            Method::POST,
            "/zones/saasprovider.com/dns_records",
            Some(
                json!({"type": "A", "name": "fallback2", "content": "127.0.0.1", "proxied": true}),
            ),
        )
        .await;
    control
        .ok(
            Method::POST,
            "/zones/saasprovider.com/dns_records",
            Some(json!({"type": "A", "name": "grey", "content": "127.0.0.1"})),
        )
        .await;
    let put = control
        .ok(
            Method::PUT,
            path,
            Some(json!({"origin": "fallback2.saasprovider.com"})),
        )
        .await;
    assert_eq!(
        put,
        json!({"origin": "fallback2.saasprovider.com", "status": "active"})
    );
    assert_eq!(control.ok(Method::GET, path, None).await, put);

    let before = export(&control).await;
    control
        .refused(
            Method::PUT,
            path,
            Some(json!({"origin": "grey.saasprovider.com"})),
            StatusCode::BAD_REQUEST,
            VALIDATION,
            "it must be proxied",
        )
        .await;
    control
        .refused(
            Method::PUT,
            path,
            Some(json!({"origin": "fallback2.saasprovider.com", "status": "active"})),
            StatusCode::BAD_REQUEST,
            MALFORMED,
            "unknown field `status`",
        )
        .await;
    assert_eq!(export(&control).await, before);

    assert_eq!(control.ok(Method::DELETE, path, None).await, put);
    control
        .refused(
            Method::GET,
            path,
            None,
            StatusCode::NOT_FOUND,
            NOT_FOUND,
            "no fallback origin",
        )
        .await;
    edge.stop().await.unwrap();
}

#[tokio::test]
async fn rulesets_are_compiled_before_they_are_accepted() {
    let (edge, control) = start().await;
    let path = "/zones/example.com/rulesets/phases/http_request_firewall_custom/entrypoint";
    control
        .refused(
            Method::GET,
            path,
            None,
            StatusCode::NOT_FOUND,
            NOT_FOUND,
            "no entrypoint ruleset",
        )
        .await;
    let put = control
        .ok(Method::PUT, path, Some(json!({"rules": [{"expression": "http.request.uri.path eq \"/admin\"", "action": "block", "description": "no admin"}]})))
        .await;
    assert_eq!(put["phase"], "http_request_firewall_custom");
    assert_eq!(put["rules"][0]["action"], "block");
    assert!(put["rules"][0]["id"].is_string(), "rules get ids: {put}");
    assert_eq!(control.ok(Method::GET, path, None).await, put);
    let by_id = control
        .ok(
            Method::GET,
            "/zones/zone-customer/rulesets/phases/http_request_firewall_custom/entrypoint",
            None,
        )
        .await;
    assert_eq!(by_id, put);

    let before = export(&control).await;
    control
        .refused(
            Method::PUT,
            path,
            Some(json!({"rules": [{"expression": "http.request.uri.path eq", "action": "block"}]})),
            StatusCode::BAD_REQUEST,
            VALIDATION,
            "rulesets",
        )
        .await;
    control
        .refused(
            Method::PUT,
            path,
            Some(json!({"rules": [{"expression": "true", "action": "explode"}]})),
            StatusCode::BAD_REQUEST,
            MALFORMED,
            "unknown variant `explode`",
        )
        .await;
    control
        .refused(
            Method::PUT,
            "/zones/example.com/rulesets/phases/http_request_nope/entrypoint",
            Some(json!({"rules": []})),
            StatusCode::NOT_FOUND,
            NOT_FOUND,
            "no phase `http_request_nope`",
        )
        .await;
    assert_eq!(export(&control).await, before);
    edge.stop().await.unwrap();
}

#[tokio::test]
async fn trace_lists_every_stage_phase_and_rule_in_order() {
    let (edge, control) = start().await;
    control
        .ok(
            Method::PUT,
            "/zones/example.com/rulesets/phases/http_request_firewall_custom/entrypoint",
            Some(json!({"rules": [
                {"expression": "http.request.uri.path eq \"/other\"", "action": "block"},
                {"expression": "starts_with(http.request.uri.path, \"/admin\")", "action": "block"}
            ]})),
        )
        .await;
    let path = "/accounts/acct-customer/request-tracer/trace";
    let blocked = control
        .ok(Method::POST, path, Some(json!({"url": "https://mystore.example.com/admin", "method": "GET", "headers": {"user-agent": "trace"}})))
        .await;
    assert_eq!(blocked["chain"]["o2o"], true);
    assert_eq!(
        blocked["chain"]["zones"],
        json!(["example.com", "saasprovider.com"])
    );
    assert_eq!(blocked["outcome"]["action"], "respond");
    assert_eq!(blocked["outcome"]["zone"], "example.com");
    assert_eq!(blocked["outcome"]["status"], 403);
    let stages = blocked["trace"].as_array().unwrap();
    assert_eq!(stages.len(), 1, "the provider never ran: {blocked}");
    let rules = &stages[0]["phases"][0]["rules"];
    assert_eq!(rules[0]["result"], "not_matched");
    assert_eq!(rules[1]["result"], "matched");

    // Through to the origin: customer, provider (with the O2O header), then responses.
    let passed = control
        .ok(
            Method::POST,
            "/accounts/acct-provider/request-tracer/trace",
            Some(json!({"url": "https://mystore.example.com/hello"})),
        )
        .await;
    assert_eq!(passed["outcome"]["action"], "origin");
    let order: Vec<(String, String, bool)> = passed["trace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["zone"].as_str().unwrap().into(),
                s["direction"].as_str().unwrap().into(),
                s["o2o_header"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("example.com".into(), "request".into(), false),
            ("saasprovider.com".into(), "request".into(), true),
        ]
    );

    let unknown = control
        .ok(
            Method::POST,
            path,
            Some(json!({"url": "https://nowhere.test/"})),
        )
        .await;
    assert_eq!(unknown["error"]["code"], 1001);
    control
        .refused(
            Method::POST,
            "/accounts/acct-nobody/request-tracer/trace",
            Some(json!({"url": "https://mystore.example.com/"})),
            StatusCode::NOT_FOUND,
            NOT_FOUND,
            "no account",
        )
        .await;
    control
        .refused(
            Method::POST,
            path,
            Some(json!({"url": "/relative"})),
            StatusCode::BAD_REQUEST,
            VALIDATION,
            "`url`",
        )
        .await;
    control
        .refused(
            Method::POST,
            path,
            Some(json!({"url": "https://mystore.example.com/", "body": "x"})),
            StatusCode::BAD_REQUEST,
            MALFORMED,
            "unknown field `body`",
        )
        .await;
    edge.stop().await.unwrap();
}

#[tokio::test]
async fn export_and_import_round_trip_and_a_bad_import_changes_nothing() {
    let (edge, control) = start().await;
    let mut state = export(&control).await;
    assert_eq!(state["zones"].as_array().unwrap().len(), 2);
    state["zones"][0]["dns_records"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "imported", "type": "A", "name": "imported.example.com", "content": "192.0.2.99", "proxied": false, "ttl": 1}));
    let summary = control.ok(Method::PUT, "/state", Some(state.clone())).await;
    assert_eq!(summary["dns_records"], 4);
    let exported = export(&control).await;
    assert_eq!(exported, state);

    let mut broken = state.clone();
    broken["zones"][1]["custom_hostnames"][0]["hostname"] = json!("not a hostname");
    control
        .refused(
            Method::PUT,
            "/state",
            Some(broken),
            StatusCode::BAD_REQUEST,
            VALIDATION,
            "`hostname`",
        )
        .await;
    let mut unknown = state.clone();
    unknown["zones"][0]["zone"]["colour"] = json!("orange");
    control
        .refused(
            Method::PUT,
            "/state",
            Some(unknown),
            StatusCode::BAD_REQUEST,
            MALFORMED,
            "unknown field `colour`",
        )
        .await;
    assert_eq!(export(&control).await, state);
    edge.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_oversized_and_empty_bodies_are_refused_cleanly() {
    let (edge, control) = start().await;
    let before = export(&control).await;
    let path = "/zones/example.com/dns_records";
    for (body, needle) in [
        (&b"{\"type\": \"A\", "[..], "EOF while parsing"),
        (&b"not json"[..], "expected ident"),
        (&b"\"a string\""[..], "invalid type: string"),
        (&b""[..], "a JSON body is required"),
    ] {
        let (status, envelope) = control.send(Method::POST, path, body.to_vec()).await;
        check_refusal(
            "malformed",
            status,
            &envelope,
            StatusCode::BAD_REQUEST,
            MALFORMED,
            needle,
        );
    }
    let huge = format!(
        "{{\"type\": \"A\", \"name\": \"{}\", \"content\": \"192.0.2.1\"}}",
        "a".repeat(2 << 20)
    );
    let (status, envelope) = control.send(Method::POST, path, huge).await;
    check_refusal(
        "oversized",
        status,
        &envelope,
        StatusCode::PAYLOAD_TOO_LARGE,
        TOO_LARGE,
        "exceeds",
    );
    assert_eq!(export(&control).await, before);
    // The socket still answers after all that.
    control.ok(Method::GET, "/zones", None).await;
    edge.stop().await.unwrap();
}
