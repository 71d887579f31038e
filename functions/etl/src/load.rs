//! A page of ad rows into `ad_insights`: one set-based upsert, inside the transaction the
//! lease fences, so a window read twice leaves the same rows.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use shared::db::{Budget, DbContext};
use shared::lease::Lease;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::{AdRow, EtlDeps, EtlError, EtlRun};

/// Upserts one page under the lease; returns (inserted, updated).
pub(crate) async fn upsert(
    deps: &EtlDeps,
    lease: &Lease,
    run: &EtlRun,
    run_id: Uuid,
    workspace: Uuid,
    currency: Option<&str>,
    rows: &[AdRow],
) -> Result<(i32, i32), EtlError> {
    let mut client = deps.pool.get().await.context("check out a connection")?;
    let transaction = shared::db::begin(&mut client, Budget::BACKGROUND).await?;
    lease.fence(&*transaction).await?;
    let column = |f: fn(&AdRow) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
    let ads: Vec<&str> = rows.iter().map(|row| row.ad_id.as_str()).collect();
    let dates: Vec<NaiveDate> = rows.iter().map(|row| row.date).collect();
    let spend: Vec<Decimal> = rows.iter().map(|row| row.spend).collect();
    let impressions: Vec<i64> = rows.iter().map(|row| row.impressions).collect();
    let clicks: Vec<i64> = rows.iter().map(|row| row.clicks).collect();
    let conversions: Vec<Option<Decimal>> = rows.iter().map(|row| row.conversions).collect();
    let values: Vec<Option<Decimal>> = rows.iter().map(|row| row.conversion_value).collect();
    let counts = transaction
        .query_typed_one(
            "WITH written AS (
                 INSERT INTO ad_insights AS a (platform, account_id, level_id, date, workspace_id, campaign_id, adset_id,
                                               currency, spend, impressions, clicks, conversions, conversion_value, run_id)
                 SELECT $1, $2, ad, day, $3, campaign, adset, $4, spend, impressions, clicks, conversions, value, $5
                   FROM unnest($6::text[], $7::date[], $8::text[], $9::text[], $10::numeric[], $11::int8[], $12::int8[],
                               $13::numeric[], $14::numeric[])
                        AS r(ad, day, campaign, adset, spend, impressions, clicks, conversions, value)
                 ON CONFLICT (platform, account_id, level_id, date) DO UPDATE
                    SET workspace_id = EXCLUDED.workspace_id, campaign_id = EXCLUDED.campaign_id,
                        adset_id = EXCLUDED.adset_id, currency = EXCLUDED.currency, spend = EXCLUDED.spend,
                        impressions = EXCLUDED.impressions, clicks = EXCLUDED.clicks,
                        conversions = EXCLUDED.conversions, conversion_value = EXCLUDED.conversion_value,
                        run_id = EXCLUDED.run_id, updated_at = now()
                 RETURNING (xmax = 0) AS inserted
             )
             SELECT count(*) FILTER (WHERE inserted)::int4, count(*) FILTER (WHERE NOT inserted)::int4 FROM written",
            &[
                (&run.platform.as_str(), Type::TEXT),
                (&run.account_id, Type::TEXT),
                (&workspace, Type::UUID),
                (&currency, Type::TEXT),
                (&run_id, Type::UUID),
                (&ads, Type::TEXT_ARRAY),
                (&dates, Type::DATE_ARRAY),
                (&column(|row| row.campaign_id.clone()), Type::TEXT_ARRAY),
                (&column(|row| row.adset_id.clone()), Type::TEXT_ARRAY),
                (&spend, Type::NUMERIC_ARRAY),
                (&impressions, Type::INT8_ARRAY),
                (&clicks, Type::INT8_ARRAY),
                (&conversions, Type::NUMERIC_ARRAY),
                (&values, Type::NUMERIC_ARRAY),
            ],
        )
        .await
        .context("upsert ad insights")?;
    transaction.commit().await.context("commit page")?;
    Ok((counts.get(0), counts.get(1)))
}
