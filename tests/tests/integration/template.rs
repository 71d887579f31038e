//! `infra/template.yaml` against the definitions in code: the same queues (FIFO, explicit
//! deduplication, visibility timeout, dead-letter queue after `max_receives`), the same
//! schedules targeting the same functions, consumers that report partial batch failures, and
//! the analytics routes.

use serde_json::Value;
use shared::queue::catalog::QUEUES;
use shared::schedule::SCHEDULES;

fn template() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/template.yaml"
    ))
    .unwrap();
    serde_norway::from_str(&text)
        .expect("the template parses as plain YAML (long-form intrinsics only)")
}

fn resources_of<'a>(template: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    template["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .collect()
}

/// The code name a queue's `QueueName` ends with (`${AWS::StackName}-metrics.fifo`).
fn queue_name(resource: &Value) -> String {
    let name = &resource["Properties"]["QueueName"];
    let text = name["Fn::Sub"]
        .as_str()
        .or(name.as_str())
        .expect("QueueName");
    text.rsplit_once('-')
        .map_or(text, |(_, name)| name)
        .to_string()
}

fn get_att_target(value: &Value) -> Option<&str> {
    match &value["Fn::GetAtt"] {
        Value::Array(parts) => parts.first()?.as_str(),
        Value::String(path) => path.split('.').next(),
        _ => None,
    }
}

#[test]
fn queues_match_the_catalog() {
    let template = template();
    let queues = resources_of(&template, "AWS::SQS::Queue");
    let main_queues: Vec<_> = queues
        .iter()
        .filter(|(_, q)| !q["Properties"]["RedrivePolicy"].is_null())
        .collect();
    let mut names: Vec<String> = main_queues.iter().map(|(_, q)| queue_name(q)).collect();
    names.sort();
    let mut expected: Vec<String> = QUEUES.iter().map(|q| q.name.to_string()).collect();
    expected.sort();
    assert_eq!(
        names, expected,
        "every code queue is in the template and nothing else"
    );

    for queue in QUEUES {
        let (_, resource) = main_queues
            .iter()
            .find(|(_, q)| queue_name(q) == queue.name)
            .unwrap();
        let properties = &resource["Properties"];
        assert_eq!(properties["FifoQueue"], true, "{}", queue.name);
        assert_eq!(
            properties["ContentBasedDeduplication"], false,
            "{}: ids are explicit",
            queue.name
        );
        assert_eq!(
            properties["VisibilityTimeout"].as_u64(),
            Some(queue.visibility_timeout.as_secs()),
            "{}",
            queue.name
        );
        let redrive = &properties["RedrivePolicy"];
        let max_receive = redrive["maxReceiveCount"]
            .as_u64()
            .or_else(|| redrive["maxReceiveCount"].as_str()?.parse().ok());
        assert_eq!(
            max_receive,
            Some(u64::from(queue.max_receives)),
            "{}",
            queue.name
        );
        let dead_letter =
            get_att_target(&redrive["deadLetterTargetArn"]).expect("deadLetterTargetArn GetAtt");
        assert_eq!(
            template["Resources"][dead_letter]["Properties"]["FifoQueue"], true,
            "{} DLQ must be FIFO",
            queue.name
        );
        let variables = &template["Globals"]["Function"]["Environment"]["Variables"];
        assert!(
            !variables[queue.url_variable].is_null(),
            "{} not given to functions",
            queue.url_variable
        );
        assert!(
            !variables[queue.dead_letter_url_variable].is_null(),
            "{} not given to functions",
            queue.dead_letter_url_variable
        );
    }
}

#[test]
fn schedules_match_the_code() {
    let template = template();
    let mut found = Vec::new();
    for (_, function) in resources_of(&template, "AWS::Serverless::Function") {
        let code_uri = function["Properties"]["CodeUri"]
            .as_str()
            .unwrap_or_default()
            .trim_end_matches('/');
        let binary = code_uri.rsplit('/').next().unwrap_or_default().to_string();
        for (_, event) in function["Properties"]["Events"]
            .as_object()
            .into_iter()
            .flatten()
        {
            if event["Type"] != "Schedule" && event["Type"] != "ScheduleV2" {
                continue;
            }
            let properties = &event["Properties"];
            let name = properties["Name"]["Fn::Sub"]
                .as_str()
                .or(properties["Name"].as_str())
                .unwrap_or_default();
            let expression = properties["Schedule"]
                .as_str()
                .or(properties["ScheduleExpression"].as_str())
                .unwrap_or_default();
            found.push((
                name.rsplit_once("}-").map_or(name, |(_, n)| n).to_string(),
                expression.to_string(),
                binary.clone(),
            ));
        }
    }
    found.sort();
    let mut expected: Vec<(String, String, String)> = SCHEDULES
        .iter()
        .map(|s| {
            (
                s.name.to_string(),
                s.expression.to_string(),
                s.target.to_string(),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(found, expected);
}

#[test]
fn queue_consumers_report_partial_failures_and_fit_the_visibility_timeout() {
    let template = template();
    let global_timeout = template["Globals"]["Function"]["Timeout"]
        .as_u64()
        .unwrap_or(3);
    for (name, function) in resources_of(&template, "AWS::Serverless::Function") {
        let timeout = function["Properties"]["Timeout"]
            .as_u64()
            .unwrap_or(global_timeout);
        for (_, event) in function["Properties"]["Events"]
            .as_object()
            .into_iter()
            .flatten()
        {
            if event["Type"] != "SQS" {
                continue;
            }
            let properties = &event["Properties"];
            assert_eq!(
                properties["FunctionResponseTypes"],
                serde_json::json!(["ReportBatchItemFailures"]),
                "{name}"
            );
            let queue = get_att_target(&properties["Queue"]).expect("Queue GetAtt");
            let visibility = template["Resources"][queue]["Properties"]["VisibilityTimeout"]
                .as_u64()
                .unwrap();
            assert!(
                visibility >= 6 * timeout,
                "{name}: visibility {visibility} < 6 × timeout {timeout}"
            );
        }
    }
}

#[test]
fn functions_are_arm64_al2023_built_by_cargo_lambda() {
    let template = template();
    let globals = &template["Globals"]["Function"];
    assert_eq!(globals["Runtime"], "provided.al2023");
    assert_eq!(globals["Architectures"], serde_json::json!(["arm64"]));
    for (name, function) in resources_of(&template, "AWS::Serverless::Function") {
        let code_uri = function["Properties"]["CodeUri"]
            .as_str()
            .unwrap_or_default();
        assert!(
            code_uri.contains("target/lambda/"),
            "{name}: CodeUri {code_uri}"
        );
        let binary = code_uri.trim_end_matches('/').rsplit('/').next().unwrap();
        assert!(
            binary_exists(binary),
            "{name}: no crate functions/{binary} and no src/bin/{binary}.rs"
        );
    }
}

/// A binary is a crate's main (`functions/<name>`) or one of its `src/bin/<name>.rs`.
fn binary_exists(binary: &str) -> bool {
    let functions = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions");
    functions.join(binary).join("Cargo.toml").exists()
        || std::fs::read_dir(&functions)
            .unwrap()
            .flatten()
            .any(|entry| {
                entry
                    .path()
                    .join("src/bin")
                    .join(format!("{binary}.rs"))
                    .exists()
            })
}

/// Every binary under `functions/`, which holds exactly what is deployed: each crate's main
/// and each `src/bin/*.rs`.
fn function_binaries() -> std::collections::BTreeSet<String> {
    let functions = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions");
    let mut binaries = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&functions).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.path().join("Cargo.toml").exists() {
            continue;
        }
        if entry.path().join("src/main.rs").exists() {
            binaries.insert(name);
        }
        if let Ok(bins) = std::fs::read_dir(entry.path().join("src/bin")) {
            for bin in bins.flatten() {
                let file = bin.file_name().to_string_lossy().into_owned();
                if let Some(stem) = file.strip_suffix(".rs") {
                    binaries.insert(stem.to_string());
                }
            }
        }
    }
    binaries
}

/// The binary a function resource deploys, from its `CodeUri`.
fn deployed_binary(function: &Value) -> String {
    function["Properties"]["CodeUri"]
        .as_str()
        .unwrap_or_default()
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn every_function_binary_is_deployed_and_every_deployed_function_is_built() {
    let template = template();
    let deployed: std::collections::BTreeSet<String> =
        resources_of(&template, "AWS::Serverless::Function")
            .into_iter()
            .map(|(_, function)| deployed_binary(function))
            .collect();
    assert_eq!(deployed, function_binaries());
    // The one list of agents names exactly these functions.
    let agents: std::collections::BTreeSet<String> = shared::agents::Agent::ALL
        .iter()
        .map(|agent| agent.name().to_string())
        .collect();
    assert_eq!(agents, deployed);
}

#[test]
fn every_function_and_dead_letter_queue_has_an_alarm_on_the_topic() {
    let template = template();
    let alarms = resources_of(&template, "AWS::CloudWatch::Alarm");
    let watched = |namespace: &str, metric: &str| -> Vec<String> {
        alarms
            .iter()
            .filter(|(_, alarm)| {
                alarm["Properties"]["Namespace"] == namespace
                    && alarm["Properties"]["MetricName"] == metric
            })
            .inspect(|(name, alarm)| {
                assert_eq!(
                    alarm["Properties"]["AlarmActions"][0]["Ref"], "AlarmTopic",
                    "{name} notifies the topic"
                );
            })
            .map(|(_, alarm)| {
                let value = &alarm["Properties"]["Dimensions"][0]["Value"];
                value["Ref"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| get_att_target(value).map(str::to_string))
                    .unwrap_or_default()
            })
            .collect()
    };
    let mut functions: Vec<String> = resources_of(&template, "AWS::Serverless::Function")
        .into_iter()
        .map(|(name, _)| name.clone())
        .collect();
    let mut errors = watched("AWS/Lambda", "Errors");
    functions.sort();
    errors.sort();
    assert_eq!(errors, functions, "an Errors alarm per function");
    let mut dead_letter_queues: Vec<String> = resources_of(&template, "AWS::SQS::Queue")
        .into_iter()
        .filter(|(name, _)| name.ends_with("DeadLetterQueue"))
        .map(|(name, _)| name.clone())
        .collect();
    let mut watched_queues = watched("AWS/SQS", "ApproximateNumberOfMessagesVisible");
    dead_letter_queues.sort();
    watched_queues.sort();
    assert_eq!(
        watched_queues, dead_letter_queues,
        "an alarm per dead-letter queue"
    );
    // The rate alarms read the run metrics of the agents they name.
    let rate_agents: Vec<&str> = alarms
        .iter()
        .filter_map(|(_, alarm)| alarm["Properties"]["Metrics"].as_array())
        .flat_map(|metrics| metrics.iter())
        .filter_map(|metric| metric["MetricStat"]["Metric"]["Dimensions"][0]["Value"].as_str())
        .collect();
    for agent in [
        "etl",
        "billing",
        "analytics",
        "shopify-webhook",
        "email-api",
    ] {
        assert!(rate_agents.contains(&agent), "no rate alarm reads {agent}");
        assert!(status::deployed_agents().contains(&agent));
    }
}

#[test]
fn the_analytics_routes_match_the_code_and_browser_routes_take_preflights() {
    let template = template();
    let events = template["Resources"]["AnalyticsFunction"]["Properties"]["Events"]
        .as_object()
        .expect("AnalyticsFunction has events");
    let mut deployed: Vec<(String, String)> = events
        .values()
        .filter(|event| event["Type"] == "HttpApi")
        .map(|event| {
            let properties = &event["Properties"];
            (
                properties["Path"].as_str().unwrap().to_string(),
                properties["Method"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    deployed.sort();
    // A browser route must let OPTIONS through to the function (which answers the
    // preflight), so it is ANY; a server route is exactly its method.
    let mut expected: Vec<(String, String)> = analytics::routes()
        .into_iter()
        .map(|(path, method, caller)| {
            let method = match caller {
                analytics::Caller::Browser => "ANY".to_string(),
                analytics::Caller::Server => method.to_string(),
            };
            (path, method)
        })
        .collect();
    expected.sort();
    assert_eq!(deployed, expected);
}
