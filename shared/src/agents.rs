//! The agents, named once. Each is one deployed function (a binary under `functions/`);
//! its name is the `agent` column of the run log, the key of the status page's table, the
//! target of a schedule or the consumer of a queue, and the function the template test
//! looks for in `infra/template.yaml`.

use std::fmt;

/// One deployed function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Agent {
    Analytics,
    Billing,
    Email,
    EmailApi,
    EmailSweep,
    Etl,
    Metrics,
    MetricsApi,
    Relay,
    ShopifyWebhook,
    Status,
    Suggestions,
    SuggestionsApi,
    SuggestionsRetrain,
}

impl Agent {
    /// Every agent, in the order of their names.
    pub const ALL: &'static [Agent] = &[
        Agent::Analytics,
        Agent::Billing,
        Agent::Email,
        Agent::EmailApi,
        Agent::EmailSweep,
        Agent::Etl,
        Agent::Metrics,
        Agent::MetricsApi,
        Agent::Relay,
        Agent::ShopifyWebhook,
        Agent::Status,
        Agent::Suggestions,
        Agent::SuggestionsApi,
        Agent::SuggestionsRetrain,
    ];

    /// The binary's name, which is also the run log's and the status page's name for it.
    pub const fn name(self) -> &'static str {
        match self {
            Agent::Analytics => "analytics",
            Agent::Billing => "billing",
            Agent::Email => "email",
            Agent::EmailApi => "email-api",
            Agent::EmailSweep => "email-sweep",
            Agent::Etl => "etl",
            Agent::Metrics => "metrics",
            Agent::MetricsApi => "metrics-api",
            Agent::Relay => "relay",
            Agent::ShopifyWebhook => "shopify-webhook",
            Agent::Status => "status",
            Agent::Suggestions => "suggestions",
            Agent::SuggestionsApi => "suggestions-api",
            Agent::SuggestionsRetrain => "suggestions-retrain",
        }
    }

    /// The agent named `name`, if there is one.
    pub fn named(name: &str) -> Option<Agent> {
        Agent::ALL
            .iter()
            .copied()
            .find(|agent| agent.name() == name)
    }

    /// Whether its work is recorded in the run log (the status page only reads it).
    pub const fn records_runs(self) -> bool {
        !matches!(self, Agent::Status)
    }
}

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_sorted_and_found_again() {
        let names: Vec<&str> = Agent::ALL.iter().map(|agent| agent.name()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
        for agent in Agent::ALL {
            assert_eq!(Agent::named(agent.name()), Some(*agent));
        }
        assert_eq!(Agent::named("nobody"), None);
    }
}
