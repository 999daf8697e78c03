//! The requests the probe sends: the user's own samples (`--request METHOD=JSON`, [`Seed`]),
//! read with each version's descriptors, and the generated ones (the empty message, every field
//! set once per member of the largest oneof).

use super::methods;
use crate::confirm::{Fill, Values, sample_with};
use crate::source::Api;
use anyhow::Context;
use prost_reflect::{DynamicMessage, Kind, MessageDescriptor, MethodDescriptor, Value};

/// A request given by the user, `METHOD=JSON`: `pkg.Service/Method` names one method,
/// `Service/Method` that method in every package (so one sample serves both versions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// `pkg.Service/Method` or `Service/Method`.
    pub method: String,
    /// The request in protobuf JSON, read with the caller's descriptors.
    pub json: String,
}

impl Seed {
    /// Parses `METHOD=JSON`.
    pub fn parse(text: &str) -> Result<Seed, String> {
        let (method, json) = text
            .split_once('=')
            .ok_or_else(|| format!("expected METHOD=JSON, got {text:?}"))?;
        let method = method.trim().trim_start_matches('/');
        if method
            .split_once('/')
            .is_none_or(|(s, m)| s.is_empty() || m.is_empty())
        {
            return Err(format!(
                "expected METHOD=JSON with METHOD as pkg.Service/Method or Service/Method, got {text:?}"
            ));
        }
        Ok(Seed {
            method: method.to_string(),
            json: json.to_string(),
        })
    }

    pub(super) fn matches(&self, m: &MethodDescriptor) -> bool {
        let service = m.parent_service();
        self.method == format!("{}/{}", service.full_name(), m.name())
            || self.method == format!("{}/{}", service.name(), m.name())
    }
}

/// The seeds that name a method of `api`, read with its descriptors.
pub(super) fn seeds(
    api: &Api,
    seeds: &[Seed],
) -> anyhow::Result<Vec<(MethodDescriptor, DynamicMessage)>> {
    let mut out = Vec::new();
    for seed in seeds {
        for m in methods(api).into_iter().filter(|m| seed.matches(m)) {
            let mut de = serde_json::Deserializer::from_str(&seed.json);
            let msg = DynamicMessage::deserialize(m.input(), &mut de)
                .and_then(|msg| de.end().map(|()| msg))
                .with_context(|| {
                    format!(
                        "--request {}: {:?} is not protobuf JSON of {} ({})",
                        seed.method,
                        seed.json,
                        m.input().full_name(),
                        api.label
                    )
                })?;
            out.push((m, msg));
        }
    }
    Ok(out)
}

/// The generated requests for `input`: the empty message, then every field set (enums at their
/// last value) once per member of the largest oneof; scalars take ordinary values (7,
/// "probe") unless `edge` asks for the ones that expose changes (1099511627783, "héllo").
pub(super) fn generated(input: &MessageDescriptor, edge: bool) -> Vec<(String, DynamicMessage)> {
    let oneofs: Vec<_> = input.oneofs().filter(|o| !o.is_synthetic()).collect();
    let variants = oneofs.iter().map(|o| o.fields().count()).max().unwrap_or(1);
    let mut out = vec![("empty".to_string(), DynamicMessage::new(input.clone()))];
    for k in 0..variants.max(1) {
        let fill = Fill {
            enum_last: true,
            oneof_member: k,
            values: (!edge).then_some(ordinary as Values),
        };
        let chosen: Vec<String> = oneofs
            .iter()
            .filter_map(|o| {
                let members: Vec<_> = o.fields().collect();
                members
                    .get(k % members.len().max(1))
                    .map(|f| format!("{}={}", o.name(), f.name()))
            })
            .collect();
        let label = if chosen.is_empty() {
            "every field set".to_string()
        } else {
            format!("every field set ({})", chosen.join(", "))
        };
        out.push((label, sample_with(input, 0, fill)));
    }
    out
}

/// Values a real API takes without complaint (small counts and amounts, ASCII words), for the
/// probe, which sends its messages to live servers; `None` where the edge values are ordinary
/// already (bools, enums, messages).
fn ordinary(kind: &Kind) -> Option<Vec<Value>> {
    Some(match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => vec![Value::I32(7), Value::I32(3)],
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => vec![Value::I64(7), Value::I64(3)],
        Kind::Uint32 | Kind::Fixed32 => vec![Value::U32(7), Value::U32(3)],
        Kind::Uint64 | Kind::Fixed64 => vec![Value::U64(7), Value::U64(3)],
        Kind::Float => vec![Value::F32(1.5)],
        Kind::Double => vec![Value::F64(1.5)],
        Kind::String => vec![
            Value::String("probe".into()),
            Value::String("sample".into()),
        ],
        Kind::Bytes => vec![Value::Bytes(b"probe".to_vec().into())],
        Kind::Bool | Kind::Enum(_) | Kind::Message(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_requests_cover_each_oneof_member_and_the_last_enum_value_with_ordinary_values() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::write(
            dir.path().join("r.proto"),
            "syntax = \"proto3\"; package r;
             enum Colour { COLOUR_UNSPECIFIED = 0; RED = 1; BLUE = 2; }
             message Req { Colour colour = 1; oneof pay { string card = 2; string voucher = 3; int64 points = 4; } }",
        )
        .expect("a proto");
        let (pool, _) = crate::source::compile_dir(dir.path(), &[]).expect("it compiles");
        let req = pool.get_message_by_name("r.Req").expect("Req");
        let made = generated(&req, false);
        let labels: Vec<&str> = made.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(
            labels,
            [
                "empty",
                "every field set (pay=card)",
                "every field set (pay=voucher)",
                "every field set (pay=points)"
            ]
        );
        let colour = req.get_field_by_name("colour").expect("colour");
        for (_, m) in &made[1..] {
            assert_eq!(m.get_field(&colour).as_enum_number(), Some(2));
        }
        assert_eq!(made[0].1.fields().count(), 0);
        // Ordinary values unless edge ones are asked for.
        let points = req.get_field_by_name("points").expect("points");
        let card = req.get_field_by_name("card").expect("card");
        assert_eq!(made[1].1.get_field(&card).as_str(), Some("probe"));
        assert_eq!(made[3].1.get_field(&points).as_i64(), Some(7));
        let edge = generated(&req, true);
        assert_eq!(edge[1].1.get_field(&card).as_str(), Some("héllo"));
        assert_eq!(
            edge[3].1.get_field(&points).as_i64(),
            Some(1_099_511_627_783)
        );
    }

    #[test]
    fn seeds_name_a_method_with_or_without_its_package() {
        assert_eq!(
            Seed::parse(r#"Shop/GetProduct={"sku": "a=b"}"#),
            Ok(Seed {
                method: "Shop/GetProduct".into(),
                json: r#"{"sku": "a=b"}"#.into()
            })
        );
        assert!(Seed::parse("Shop/GetProduct").is_err());
        assert!(Seed::parse("GetProduct={}").is_err());
        assert!(Seed::parse("/Shop/={}").is_err());
    }
}
