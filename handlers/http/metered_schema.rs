//! The request bodies of the metered service routes as the OpenAPI
//! document states them, written by hand: `exports` names its export
//! format and every other metric none, which no derive can say.

use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::app::{ConsumeInput, ReserveInput};
use crate::domain::plan::{ExportFormat, Feature};
use crate::domain::quota::MAX_RESERVATION_TTL;
use crate::domain::usage::{Metric, MAX_QUANTITY};

/// The body of a use of a metric, as its schema: `exports` names its
/// export format and every other metric none (`check_gate`), so the two
/// are alternatives. `metrics` are the metrics besides `exports` it takes;
/// `extra` its other properties, none required.
fn metered_use_schema(
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

impl PartialSchema for ReserveInput {
    fn schema() -> RefOr<Schema> {
        let ttl = ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
            .minimum(Some(1))
            .maximum(Some(MAX_RESERVATION_TTL.num_seconds()))
            .description(Some(
                "How long the hold lasts unless committed or released: 1 second to 24 hours; \
                 15 minutes if absent.",
            ));
        metered_use_schema(
            "Holds quota for work that may fail: a counter, or a gauge it grows \
             (`team_members` is counted from the team).",
            &[Metric::Documents, Metric::ApiCalls, Metric::StorageMb],
            &[("ttl_seconds", ttl.into())],
        )
    }
}

impl ToSchema for ReserveInput {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <ConsumeInput as ToSchema>::schemas(schemas);
    }
}
