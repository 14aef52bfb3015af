use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::account::Action;
use crate::domain::plan::{ExportFormat, Feature, Limit, PlanId};
use crate::domain::usage::{Metric, Window, MAX_QUANTITY};

use super::{Acting, AppError, Billing};

/// What KRAFTD's services report: a counter's increase.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumeInput {
    pub metric: Metric,
    /// From 1 to 1,000,000 in one report.
    #[serde(deserialize_with = "super::whole::number")]
    pub quantity: i64,
    /// The gated feature this use needs, checked against the plan.
    #[serde(default)]
    pub feature: Option<Feature>,
    /// Required for `exports`: the format, checked against the plan.
    #[serde(default)]
    pub format: Option<ExportFormat>,
}

/// The body of a use of a metric, as its schema: `exports` names its
/// export format and every other metric none (`check_gate`), so the two
/// are alternatives. `metrics` are the metrics besides `exports` it takes;
/// `extra` its other properties, none required.
pub(crate) fn metered_use_schema(
    description: &str,
    metrics: &[Metric],
    extra: &[(&str, RefOr<Schema>)],
) -> RefOr<Schema> {
    fn named<T: ToSchema>() -> RefOr<Schema> {
        Ref::from_schema_name(T::name()).into()
    }
    fn nullable<T: ToSchema>() -> OneOfBuilder {
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .item(named::<T>())
    }
    fn enum_of(metrics: &[Metric]) -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(metrics.iter().map(|m| m.as_str())))
    }
    let variant = |metric: ObjectBuilder, format: RefOr<Schema>, format_required: bool| {
        let mut o = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("metric", metric)
            .required("metric")
            .property(
                "quantity",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(MAX_QUANTITY))
                    .description(Some("From 1 to 1,000,000 at once.")),
            )
            .required("quantity")
            .property(
                "feature",
                nullable::<Feature>().description(Some(
                    "The gated feature this use needs, checked against the plan.",
                )),
            )
            .property("format", format)
            .additional_properties(Some(
                utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
            ));
        if format_required {
            o = o.required("format");
        }
        for (name, schema) in extra {
            o = o.property(*name, schema.clone());
        }
        o
    };
    let others = variant(
        enum_of(metrics),
        ObjectBuilder::new()
            .schema_type(Type::Null)
            .description(Some("Only `exports` names a format."))
            .into(),
        false,
    );
    let exports = variant(enum_of(&[Metric::Exports]), named::<ExportFormat>(), true);
    OneOfBuilder::new()
        .description(Some(description))
        .item(others)
        .item(exports)
        .into()
}

impl PartialSchema for ConsumeInput {
    fn schema() -> RefOr<Schema> {
        metered_use_schema(
            "What KRAFTD's services report: a counter's increase. Gauges are set with \
             `PUT …/gauges/{metric}`; `team_members` is counted from the team.",
            &[Metric::Documents, Metric::ApiCalls],
            &[],
        )
    }
}

impl ToSchema for ConsumeInput {
    fn name() -> std::borrow::Cow<'static, str> {
        "ConsumeRequest".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Feature::name().into(), Feature::schema()));
        schemas.push((ExportFormat::name().into(), ExportFormat::schema()));
    }
}

/// Where a metric stands after a successful check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterReading {
    pub metric: Metric,
    pub plan: PlanId,
    pub used: u64,
    /// What live reservations hold: it counts against the limit too.
    pub held: u64,
    pub limit: Limit,
    pub window: Option<Window>,
}

impl MeterReading {
    pub fn remaining(&self) -> Option<u64> {
        self.limit
            .map(|l| l.saturating_sub(self.used.saturating_add(self.held)))
    }

    /// Past the limit: a gauge observed above it (after a downgrade, say).
    pub fn over_limit(&self) -> bool {
        self.limit.is_some_and(|l| self.used > l)
    }

    pub fn seconds_to_reset(&self, now: DateTime<Utc>) -> Option<u64> {
        self.window.map(|w| w.seconds_until_end(now))
    }
}

/// One line of the usage report.
pub type UsageLine = MeterReading;

impl Billing {
    /// Usage against limits for the current windows, every metric; seats
    /// are the account's members and pending invitations.
    pub async fn usage_report(&self, acting: &Acting) -> Result<Vec<UsageLine>, AppError> {
        acting.require(Action::Use)?;
        Ok(self.entitlements_of(&acting.account.value).await?.readings)
    }
}
