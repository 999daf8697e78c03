//! Field rules: one field present on both sides, compared by number (name, JSON name, type,
//! cardinality, default, options).

use super::*;

impl Engine<'_, '_> {
    pub(super) fn field_pair(
        &mut self,
        om: &MessageDescriptor,
        nm: &MessageDescriptor,
        of: &FieldDescriptor,
        nf: &FieldDescriptor,
        mname: &str,
    ) {
        let n = self.n;
        let nfile = nm.parent_file();
        let floc = n.loc_in(nm, nf.path());
        let el = format!("{}.{}", om.full_name(), of.name());
        let num = of.number();
        let subject = Subject::Field {
            old_msg: om.clone(),
            new_msg: nm.clone(),
            number: num,
        };
        let head = format!(
            "Field \"{num}\" with name \"{}\" on message \"{mname}\"",
            nf.name()
        );
        self.comments(&om.parent_file(), of.path(), &nfile, nf.path(), &el);
        if of.name() != nf.name() {
            self.push(
                "FIELD_SAME_NAME",
                el.clone(),
                floc.clone(),
                format!(
                    "Field \"{num}\" on message \"{mname}\" changed name from \"{}\" to \"{}\".",
                    of.name(),
                    nf.name()
                ),
                subject.clone(),
            );
        }
        if of.json_name() != nf.json_name() {
            self.push(
                "FIELD_SAME_JSON_NAME",
                el.clone(),
                floc.clone(),
                format!(
                    "{head} changed option \"json_name\" from \"{}\" to \"{}\".",
                    of.json_name(),
                    nf.json_name()
                ),
                subject.clone(),
            );
        }
        let jstype = |f: &FieldDescriptor| {
            f.field_descriptor_proto()
                .options
                .as_ref()
                .map(|x| x.jstype().as_str_name())
                .unwrap_or("JS_NORMAL")
        };
        if jstype(of) != jstype(nf) {
            self.push(
                "FIELD_SAME_JSTYPE",
                el.clone(),
                floc.clone(),
                format!(
                    "{head} changed option \"jstype\" from \"{}\" to \"{}\".",
                    jstype(of),
                    jstype(nf)
                ),
                Subject::NoWire(CODEGEN_OPTION),
            );
        }
        // Types.
        let (ok, nk) = (of.kind(), nf.kind());
        let oname = match &ok {
            Kind::Message(m) => self.pairing.map(m.full_name()),
            Kind::Enum(e) => self.pairing.map(e.full_name()),
            k => kind_name(k),
        };
        let nname = kind_name(&nk);
        let named = matches!(ok, Kind::Message(_) | Kind::Enum(_));
        // A group (proto2, or editions' DELIMITED encoding) is another type than a message.
        let group_changed = of.is_group() != nf.is_group();
        let type_changed = std::mem::discriminant(&ok) != std::mem::discriminant(&nk)
            || oname != nname
            || group_changed;
        if type_changed {
            let shown = |k: &Kind, name: &str, other_named: bool| -> String {
                if matches!(k, Kind::Enum(_)) && !other_named {
                    "enum".to_string()
                } else if matches!(k, Kind::Message(_)) && !other_named {
                    "message".to_string()
                } else {
                    name.to_string()
                }
            };
            let both_named = named && matches!(nk, Kind::Message(_) | Kind::Enum(_));
            let group = |f: &FieldDescriptor| f.is_group().then(|| "group".to_string());
            let (a, b) = if group_changed {
                let message = || "message".to_string();
                (
                    group(of).unwrap_or_else(message),
                    group(nf).unwrap_or_else(message),
                )
            } else {
                (
                    shown(&ok, &kind_name(&ok), both_named),
                    shown(&nk, &nname, both_named),
                )
            };
            let msg = format!("{head} changed type from \"{a}\" to \"{b}\".");
            self.push(
                "FIELD_SAME_TYPE",
                el.clone(),
                floc.clone(),
                msg.clone(),
                subject.clone(),
            );
            let identical = match (&ok, &nk) {
                _ if group_changed => None,
                (Kind::Message(a), Kind::Message(b)) => Some((
                    same_shape(a, b, false, &mut HashSet::new()),
                    same_shape(a, b, true, &mut HashSet::new()),
                )),
                _ => None,
            };
            let wire_bad = wire_group(&ok) != wire_group(&nk)
                || (matches!(ok, Kind::Bytes) && matches!(nk, Kind::String))
                || (named && oname != nname)
                || group_changed;
            // Under WIRE and WIRE_JSON, a rename to an identical type is not breaking.
            let json_bad = wire_bad || json_group(&ok) != json_group(&nk);
            for (rule, breaks, same) in [
                (
                    "FIELD_WIRE_COMPATIBLE_TYPE",
                    wire_bad,
                    identical.map(|x| x.0),
                ),
                (
                    "FIELD_WIRE_JSON_COMPATIBLE_TYPE",
                    json_bad,
                    identical.map(|x| x.1),
                ),
            ] {
                if breaks {
                    let raw = Raw {
                        identical_rename: same.map(|x| (x, x)),
                        ..self.raw(rule, &el, floc.clone(), msg.clone(), subject.clone())
                    };
                    self.out.push(raw);
                }
            }
            if wire_group(&ok) == wire_group(&nk)
                && !named
                && !range_preserved(&ok, &nk)
                && !matches!(nk, Kind::Bytes | Kind::String)
            {
                self.push("GRPC_FIELD_SAME_VALUE_RANGE", el.clone(), floc.clone(), format!("{head} changed type from \"{}\" to \"{nname}\": same wire type, but values are truncated or reinterpreted.", kind_name(&ok)), subject.clone());
            }
        }
        // Cardinality.
        let (oc, nc) = (self.o.cardinality(of), n.cardinality(nf));
        if oc != nc {
            let msg = format!("{head} changed cardinality from \"{oc}\" to \"{nc}\".");
            let differs = |json: bool| wire_cardinality(oc, json) != wire_cardinality(nc, json);
            for (rule, breaks) in [
                ("FIELD_SAME_CARDINALITY", true),
                ("FIELD_WIRE_COMPATIBLE_CARDINALITY", differs(false)),
                ("FIELD_WIRE_JSON_COMPATIBLE_CARDINALITY", differs(true)),
            ] {
                if breaks {
                    self.push(rule, el.clone(), floc.clone(), msg.clone(), subject.clone());
                }
            }
        }
        // Oneof membership.
        let oneof = |f: &FieldDescriptor| {
            f.containing_oneof()
                .filter(|x| !x.is_synthetic())
                .map(|x| x.name().to_string())
        };
        let moved = match (oneof(of), oneof(nf)) {
            (None, Some(_)) => Some("from outside to inside a oneof".to_string()),
            (Some(_), None) => Some("from inside to outside a oneof".to_string()),
            (Some(a), Some(b)) if a != b => Some(format!("from oneof \"{a}\" to oneof \"{b}\"")),
            _ => None,
        };
        if let Some(moved) = moved {
            let msg = format!("{head} moved {moved}.");
            self.push(
                "FIELD_SAME_ONEOF",
                el.clone(),
                floc.clone(),
                msg,
                subject.clone(),
            );
        }
        // Defaults.
        let (od, nd) = (
            of.field_descriptor_proto().default_value.clone(),
            nf.field_descriptor_proto().default_value.clone(),
        );
        if !type_changed && od != nd {
            self.push(
                "FIELD_SAME_DEFAULT",
                el.clone(),
                floc.clone(),
                format!(
                    "{head} changed default value from {} to {}.",
                    od.as_deref().unwrap_or("(none)"),
                    nd.as_deref().unwrap_or("(none)")
                ),
                subject.clone(),
            );
        }
        if !type_changed && !of.is_list() && !of.is_map() {
            let (a, b) = (
                value_text(&of.default_value(), &ok),
                value_text(&nf.default_value(), &nk),
            );
            if a != b {
                self.push("GRPC_FIELD_SAME_DEFAULT", el.clone(), floc.clone(), format!("{head}: a reader that finds the field absent now assumes {b} instead of {a}."), subject.clone());
            }
        }
        // UTF-8 validation (proto3 and editions verify strings by default, proto2 does not).
        let (ou, nu) = (self.o.utf8(of), n.utf8(nf));
        if matches!(ok, Kind::String) && matches!(nk, Kind::String) && ou != nu {
            self.push(
                "FIELD_SAME_UTF8_VALIDATION",
                el.clone(),
                floc.clone(),
                format!("{head} changed UTF-8 validation from \"{ou}\" to \"{nu}\"."),
                subject.clone(),
            );
        }
        if matches!(ok, Kind::String) && matches!(nk, Kind::String) {
            let (a, b) = (self.o.java_utf8(of), n.java_utf8(nf));
            if a != b {
                self.push(
                    "FIELD_SAME_JAVA_UTF8_VALIDATION",
                    el.clone(),
                    floc.clone(),
                    format!("{head} changed Java string UTF8 validation from \"{a}\" to \"{b}\"."),
                    Subject::NoWire(CODEGEN_OPTION),
                );
            }
        }
        let strings = |k: &Kind| matches!(k, Kind::String | Kind::Bytes);
        if strings(&ok) && strings(&nk) {
            let (a, b) = (self.o.cpp_string_type(of), n.cpp_string_type(nf));
            if a != b {
                self.push(
                    "FIELD_SAME_CPP_STRING_TYPE",
                    el,
                    floc,
                    format!("{head} changed C++ string type from \"{a}\" to \"{b}\"."),
                    Subject::NoWire(CODEGEN_OPTION),
                );
            }
        }
    }
}
