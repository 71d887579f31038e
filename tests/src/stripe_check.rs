//! Compares the `stripe` schema of a database with an [`ExpectedState`] and lists every
//! difference: a missing row, an extra row, a wrong column, a wrong `last_event_id`, a ledger
//! that does not hold exactly the distinct events (or gives a type we do not model another
//! outcome than `unsupported`).
//!
//! Only `query_typed` (unnamed statements), so it also works through PgBouncer in
//! transaction mode. Timestamps are compared as unix seconds, uuids as text.

use std::collections::BTreeMap;
use std::fmt;

use tokio_postgres::types::Type;

use crate::stripe_events::{ExpectedState, LastEvent};

/// One difference between the database and the expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The table, without the `stripe.` schema.
    pub table: &'static str,
    /// The object (or event) id; `*` for a table-wide difference.
    pub id: String,
    /// The column; `row` when the row itself is missing or extra.
    pub column: String,
    pub expected: String,
    pub actual: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stripe.{} {} {}: expected {}, actual {}",
            self.table, self.id, self.column, self.expected, self.actual
        )
    }
}

/// A column value as the checker compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Null,
    Text(String),
    Int(i64),
    Bool(bool),
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Null => f.write_str("NULL"),
            Val::Text(text) => write!(f, "{text:?}"),
            Val::Int(value) => write!(f, "{value}"),
            Val::Bool(value) => write!(f, "{value}"),
        }
    }
}

impl From<&str> for Val {
    fn from(value: &str) -> Self {
        Val::Text(value.to_string())
    }
}
impl From<&String> for Val {
    fn from(value: &String) -> Self {
        Val::Text(value.clone())
    }
}
impl From<String> for Val {
    fn from(value: String) -> Self {
        Val::Text(value)
    }
}
impl From<i64> for Val {
    fn from(value: i64) -> Self {
        Val::Int(value)
    }
}
impl From<bool> for Val {
    fn from(value: bool) -> Self {
        Val::Bool(value)
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(value: Option<T>) -> Self {
        value.map_or(Val::Null, Into::into)
    }
}

/// The values a column may hold (usually exactly one).
type Accepted = Vec<Val>;
/// Expected columns of one row.
type Columns = Vec<(&'static str, Accepted)>;

fn is(value: impl Into<Val>) -> Accepted {
    vec![value.into()]
}

fn last_event_columns(last: &LastEvent) -> [(&'static str, Accepted); 2] {
    [
        ("last_event_id", last.accepted().map(Val::from).collect()),
        ("last_event_created", is(last.created)),
    ]
}

/// One mirror table: the columns read, as SQL expressions named like the columns.
struct Table {
    name: &'static str,
    select: String,
    rows: BTreeMap<String, Columns>,
}

impl Table {
    /// A table whose rows also record which event wrote them (`last_event_id`, `_created`).
    fn written_by_events<T>(
        name: &'static str,
        select: &str,
        objects: &BTreeMap<String, T>,
        columns: impl Fn(&T) -> (Columns, &LastEvent),
    ) -> Table {
        const LAST: &str =
            "last_event_id, extract(epoch FROM last_event_created)::int8 AS last_event_created";
        let rows = objects
            .iter()
            .map(|(id, object)| {
                let (mut columns, last) = columns(object);
                columns.extend(last_event_columns(last));
                (id.clone(), columns)
            })
            .collect();
        Table {
            name,
            select: format!("{select}, {LAST}"),
            rows,
        }
    }
}

fn tables(expected: &ExpectedState) -> Vec<Table> {
    let customers = Table::written_by_events(
        "customers",
        "email, name, workspace_id::text AS workspace_id, deleted",
        &expected.customers,
        |c| {
            let lenient = |value: Val| {
                if c.deleted_as_stub && value != Val::Null {
                    vec![value, Val::Null]
                } else {
                    vec![value]
                }
            };
            let columns = vec![
                ("email", lenient(c.email.as_ref().into())),
                ("name", lenient(c.name.as_ref().into())),
                (
                    "workspace_id",
                    lenient(c.workspace_id.map(|w| w.to_string()).as_ref().into()),
                ),
                ("deleted", is(c.deleted)),
            ];
            (columns, &c.last_event)
        },
    );
    let products = Table::written_by_events(
        "products",
        "name, active, deleted",
        &expected.products,
        |p| {
            let columns = vec![
                ("name", is(&p.name)),
                ("active", is(p.active)),
                ("deleted", is(p.deleted)),
            ];
            (columns, &p.last_event)
        },
    );
    let prices = Table::written_by_events(
        "prices",
        "product, active, unit_amount, currency, recurring_interval, \
         recurring_interval_count::int8 AS recurring_interval_count, deleted",
        &expected.prices,
        |p| {
            let columns = vec![
                ("product", is(&p.product)),
                ("active", is(p.active)),
                ("unit_amount", is(p.unit_amount)),
                ("currency", is(&p.currency)),
                ("recurring_interval", is(&p.recurring_interval)),
                ("recurring_interval_count", is(p.recurring_interval_count)),
                ("deleted", is(p.deleted)),
            ];
            (columns, &p.last_event)
        },
    );
    let subscriptions = Table::written_by_events(
        "subscriptions",
        "customer, status, cancel_at_period_end, \
         extract(epoch FROM current_period_end)::int8 AS current_period_end, \
         extract(epoch FROM canceled_at)::int8 AS canceled_at, \
         extract(epoch FROM ended_at)::int8 AS ended_at, deleted",
        &expected.subscriptions,
        |s| {
            let columns = vec![
                ("customer", is(&s.customer)),
                ("status", is(&s.status)),
                ("cancel_at_period_end", is(s.cancel_at_period_end)),
                ("current_period_end", is(s.current_period_end)),
                ("canceled_at", is(s.canceled_at)),
                ("ended_at", is(s.ended_at)),
                ("deleted", is(s.deleted)),
            ];
            (columns, &s.last_event)
        },
    );
    // The items are written with their subscription and record no event of their own.
    let subscription_items = Table {
        name: "subscription_items",
        select: "subscription, price, quantity, deleted".into(),
        rows: expected
            .subscription_items
            .iter()
            .map(|(id, i)| {
                let columns = vec![
                    ("subscription", is(&i.subscription)),
                    ("price", is(&i.price)),
                    ("quantity", is(i.quantity)),
                    ("deleted", is(i.deleted)),
                ];
                (id.clone(), columns)
            })
            .collect(),
    };
    let invoices = Table::written_by_events(
        "invoices",
        "customer, subscription, status, amount_due, amount_paid, currency",
        &expected.invoices,
        |i| {
            let columns = vec![
                ("customer", is(&i.customer)),
                ("subscription", is(i.subscription.as_ref())),
                ("status", is(&i.status)),
                ("amount_due", is(i.amount_due)),
                ("amount_paid", is(i.amount_paid)),
                ("currency", is(&i.currency)),
            ];
            (columns, &i.last_event)
        },
    );
    let charges = Table::written_by_events(
        "charges",
        "customer, invoice, status, amount, amount_refunded, refunded",
        &expected.charges,
        |c| {
            let mut invoice = is(c.invoice.as_ref());
            if !c.invoice_in_final_shape && c.invoice.is_some() {
                invoice.push(Val::Null);
            }
            let columns = vec![
                ("customer", is(&c.customer)),
                ("invoice", invoice),
                ("status", is(&c.status)),
                ("amount", is(c.amount)),
                ("amount_refunded", is(c.amount_refunded)),
                ("refunded", is(c.refunded)),
            ];
            (columns, &c.last_event)
        },
    );
    let disputes = Table::written_by_events(
        "disputes",
        "charge, amount, status",
        &expected.disputes,
        |d| {
            let columns = vec![
                ("charge", is(&d.charge)),
                ("amount", is(d.amount)),
                ("status", is(&d.status)),
            ];
            (columns, &d.last_event)
        },
    );
    let checkout_sessions = Table::written_by_events(
        "checkout_sessions",
        "customer, subscription, payment_status",
        &expected.checkout_sessions,
        |s| {
            let columns = vec![
                ("customer", is(&s.customer)),
                ("subscription", is(&s.subscription)),
                ("payment_status", is(&s.payment_status)),
            ];
            (columns, &s.last_event)
        },
    );
    vec![
        customers,
        products,
        prices,
        subscriptions,
        subscription_items,
        invoices,
        charges,
        disputes,
        checkout_sessions,
    ]
}

/// Reads one column of any type the checker selects.
fn read(row: &tokio_postgres::Row, index: usize) -> Result<Val, tokio_postgres::Error> {
    let column = &row.columns()[index];
    Ok(match *column.type_() {
        Type::BOOL => row.try_get::<_, Option<bool>>(index)?.into(),
        Type::INT8 => row.try_get::<_, Option<i64>>(index)?.into(),
        Type::INT4 => row.try_get::<_, Option<i32>>(index)?.map(i64::from).into(),
        Type::INT2 => row.try_get::<_, Option<i16>>(index)?.map(i64::from).into(),
        _ => row.try_get::<_, Option<String>>(index)?.into(),
    })
}

async fn select(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Result<Vec<BTreeMap<String, Val>>, String> {
    let rows = client
        .query_typed(sql, &[])
        .await
        .map_err(|error| match error.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => error.to_string(),
        })?;
    rows.iter()
        .map(|row| {
            (0..row.columns().len())
                .map(|index| Ok((row.columns()[index].name().to_string(), read(row, index)?)))
                .collect::<Result<BTreeMap<_, _>, tokio_postgres::Error>>()
                .map_err(|error| error.to_string())
        })
        .collect()
}

/// Every difference between the `stripe` schema and `expected`, table by table, rows in id
/// order. Empty when the mirror is exactly right.
pub async fn check(client: &tokio_postgres::Client, expected: &ExpectedState) -> Vec<Mismatch> {
    let mut mismatches = Vec::new();
    for table in tables(expected) {
        let sql = format!("SELECT id, {} FROM stripe.{}", table.select, table.name);
        let rows = match select(client, &sql).await {
            Ok(rows) => rows,
            Err(error) => {
                mismatches.push(Mismatch {
                    table: table.name,
                    id: "*".into(),
                    column: "query".into(),
                    expected: "rows".into(),
                    actual: error,
                });
                continue;
            }
        };
        let mut actual: BTreeMap<String, BTreeMap<String, Val>> = BTreeMap::new();
        for row in rows {
            let Some(Val::Text(id)) = row.get("id").cloned() else {
                continue;
            };
            actual.insert(id, row);
        }
        for (id, columns) in &table.rows {
            let Some(row) = actual.get(id) else {
                mismatches.push(Mismatch {
                    table: table.name,
                    id: id.clone(),
                    column: "row".into(),
                    expected: "present".into(),
                    actual: "missing".into(),
                });
                continue;
            };
            for (column, accepted) in columns {
                let value = row.get(*column).cloned().unwrap_or(Val::Null);
                if !accepted.contains(&value) {
                    mismatches.push(Mismatch {
                        table: table.name,
                        id: id.clone(),
                        column: (*column).to_string(),
                        expected: accepted
                            .iter()
                            .map(Val::to_string)
                            .collect::<Vec<_>>()
                            .join(" or "),
                        actual: value.to_string(),
                    });
                }
            }
        }
        for id in actual.keys().filter(|id| !table.rows.contains_key(*id)) {
            mismatches.push(Mismatch {
                table: table.name,
                id: id.clone(),
                column: "row".into(),
                expected: "absent".into(),
                actual: "present".into(),
            });
        }
    }
    check_ledger(client, expected, &mut mismatches).await;
    mismatches
}

async fn check_ledger(
    client: &tokio_postgres::Client,
    expected: &ExpectedState,
    mismatches: &mut Vec<Mismatch>,
) {
    let rows = match select(client, "SELECT id, type, outcome FROM stripe.events").await {
        Ok(rows) => rows,
        Err(error) => {
            mismatches.push(Mismatch {
                table: "events",
                id: "*".into(),
                column: "query".into(),
                expected: "rows".into(),
                actual: error,
            });
            return;
        }
    };
    if rows.len() != expected.event_ids.len() {
        mismatches.push(Mismatch {
            table: "events",
            id: "*".into(),
            column: "count(*)".into(),
            expected: expected.event_ids.len().to_string(),
            actual: rows.len().to_string(),
        });
    }
    let mut outcomes: BTreeMap<String, Val> = BTreeMap::new();
    for row in rows {
        if let Some(Val::Text(id)) = row.get("id").cloned() {
            outcomes.insert(id, row.get("outcome").cloned().unwrap_or(Val::Null));
        }
    }
    for id in &expected.event_ids {
        let Some(outcome) = outcomes.get(id) else {
            mismatches.push(Mismatch {
                table: "events",
                id: id.clone(),
                column: "row".into(),
                expected: "present".into(),
                actual: "missing".into(),
            });
            continue;
        };
        let unsupported = *outcome == Val::from("unsupported");
        let unmodeled = expected.unmodeled_event_ids.contains(id);
        if unmodeled != unsupported {
            mismatches.push(Mismatch {
                table: "events",
                id: id.clone(),
                column: "outcome".into(),
                expected: if unmodeled {
                    "\"unsupported\"".into()
                } else {
                    "\"applied\" or \"stale\"".into()
                },
                actual: outcome.to_string(),
            });
        }
    }
    for id in outcomes
        .keys()
        .filter(|id| !expected.event_ids.contains(*id))
    {
        mismatches.push(Mismatch {
            table: "events",
            id: id.clone(),
            column: "row".into(),
            expected: "absent".into(),
            actual: "present".into(),
        });
    }
}

/// Counts per table and column, for a one-line summary of many mismatches.
pub fn summarize(mismatches: &[Mismatch]) -> String {
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for mismatch in mismatches {
        *counts
            .entry((mismatch.table, mismatch.column.as_str()))
            .or_default() += 1;
    }
    counts
        .iter()
        .map(|((table, column), count)| format!("{table}.{column}: {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Up to `n` mismatches to show, spread over the kinds of difference: the first few of each
/// table and column, then the rest in order.
pub fn sample(mismatches: &[Mismatch], n: usize) -> Vec<&Mismatch> {
    let mut per_kind: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let kinds = mismatches
        .iter()
        .map(|m| (m.table, m.column.as_str()))
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        .max(1);
    let quota = (n / kinds).max(1);
    let mut chosen: Vec<usize> = Vec::new();
    for (index, mismatch) in mismatches.iter().enumerate() {
        let seen = per_kind
            .entry((mismatch.table, mismatch.column.as_str()))
            .or_default();
        if *seen < quota && chosen.len() < n {
            *seen += 1;
            chosen.push(index);
        }
    }
    for index in 0..mismatches.len() {
        if chosen.len() >= n {
            break;
        }
        if !chosen.contains(&index) {
            chosen.push(index);
        }
    }
    chosen.sort_unstable();
    chosen.into_iter().map(|index| &mismatches[index]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mismatch(table: &'static str, column: &str, id: &str) -> Mismatch {
        Mismatch {
            table,
            id: id.into(),
            column: column.into(),
            expected: Val::from("a").to_string(),
            actual: Val::Null.to_string(),
        }
    }

    #[test]
    fn a_mismatch_names_object_column_and_both_values() {
        assert_eq!(
            mismatch("customers", "email", "cus_1").to_string(),
            "stripe.customers cus_1 email: expected \"a\", actual NULL"
        );
    }

    #[test]
    fn the_sample_shows_every_kind_first() {
        let mut all: Vec<Mismatch> = (0..30)
            .map(|i| mismatch("subscriptions", "deleted", &format!("sub_{i:02}")))
            .collect();
        all.push(mismatch("subscription_items", "row", "si_1"));
        all.push(mismatch("events", "count(*)", "*"));
        let sample = sample(&all, 20);
        assert_eq!(sample.len(), 20);
        assert!(sample.iter().any(|m| m.table == "subscription_items"));
        assert!(sample.iter().any(|m| m.table == "events"));
        assert_eq!(
            summarize(&all),
            "events.count(*): 1, subscription_items.row: 1, subscriptions.deleted: 30"
        );
    }
}
