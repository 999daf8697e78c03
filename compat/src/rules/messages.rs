//! Message rules: a message's options, oneofs, extension ranges and fields paired by number,
//! and comment edits.

use super::*;

impl Engine<'_, '_> {
    pub(super) fn messages(&mut self) {
        let o = self.o;
        let n = self.n;
        for (k, om) in &o.messages {
            let Some(nm) = n.messages.get(k) else {
                continue;
            };
            self.message_pair(om, nm);
        }
        self.added(MESSAGES);
    }

    pub(super) fn message_pair(&mut self, om: &MessageDescriptor, nm: &MessageDescriptor) {
        let n = self.n;
        let nfile = nm.parent_file();
        let mloc = n.loc_in(nm, nm.path());
        let mname = short(nm.full_name(), nm.package_name());
        let element = om.full_name().to_string();
        self.comments(
            &om.parent_file(),
            om.path(),
            &nfile,
            nm.path(),
            om.full_name(),
        );
        // Fields deleted.
        let (old_reserved, new_reserved) = (Reserved::message(om), Reserved::message(nm));
        for of in om.fields() {
            if nm.get_field(of.number()).is_some() {
                continue;
            }
            let deleted = Deleted {
                rules: FIELD_DELETED,
                element: format!("{element}.{}", of.name()),
                loc: mloc.clone(),
                what: format!(
                    "Previously present field \"{}\" with name \"{}\" on message \"{mname}\" was deleted",
                    of.number(),
                    of.name()
                ),
                number: of.number().into(),
                name: of.name(),
            };
            let subject = Subject::Field {
                old_msg: om.clone(),
                new_msg: nm.clone(),
                number: of.number(),
            };
            self.deleted(deleted, &new_reserved, subject);
        }
        for nf in nm.fields() {
            match om.get_field(nf.number()) {
                Some(of) => self.field_pair(om, nm, &of, &nf, mname),
                None => {
                    let loc = n.loc(&nfile, nf.path());
                    if nf.cardinality() != Cardinality::Required {
                        self.change(
                            "FIELD_ADDED",
                            format!("{element}.{}", nf.name()),
                            loc,
                            format!(
                                "Field \"{}\" with name \"{}\" was added to message \"{mname}\".",
                                nf.number(),
                                nf.name()
                            ),
                            Bump::Minor,
                        );
                    }
                }
            }
        }
        // Oneofs.
        let real = |m: &MessageDescriptor| -> BTreeSet<String> {
            m.oneofs()
                .filter(|x| !x.is_synthetic())
                .map(|x| x.name().to_string())
                .collect()
        };
        for name in real(om).difference(&real(nm)) {
            self.push(
                "ONEOF_NO_DELETE",
                format!("{element}.{name}"),
                mloc.clone(),
                format!("Previously present oneof \"{name}\" on message \"{mname}\" was deleted."),
                Subject::NoWire("fields are reported on their own (FIELD_SAME_ONEOF)"),
            );
        }
        // Required fields.
        // buf counts proto2 `required` only, not editions' LEGACY_REQUIRED (a change of
        // that is a FIELD_SAME_CARDINALITY finding alone); so does this rule.
        let required = |side: &Side, m: &MessageDescriptor| -> BTreeSet<u32> {
            m.fields()
                .filter(|f| f.cardinality() == Cardinality::Required && !side.legacy_required(f))
                .map(|f| f.number())
                .collect()
        };
        let (oreq, nreq) = (required(self.o, om), required(n, nm));
        for (how, nums) in [("deleted", &oreq - &nreq), ("added", &nreq - &oreq)] {
            for num in nums {
                // A deleted one points at the message, an added one at the new field.
                let loc = match nm.get_field(num) {
                    Some(nf) if how == "added" => n.loc(&nfile, nf.path()),
                    _ => mloc.clone(),
                };
                let subject = Subject::Field {
                    old_msg: om.clone(),
                    new_msg: nm.clone(),
                    number: num,
                };
                self.push("MESSAGE_SAME_REQUIRED_FIELDS", element.clone(), loc, format!("Message \"{mname}\" had required field \"{num}\" {how}. Required fields must always be sent, so if one side does not know about the required field, this will result in a breakage."), subject);
            }
        }
        // Reserved ranges and names.
        let on = format!("message \"{mname}\"");
        self.unreserved(
            "RESERVED_MESSAGE_NO_DELETE",
            &element,
            &mloc,
            &on,
            (&old_reserved, &new_reserved),
        );
        // Extension ranges.
        let new_ext: Vec<(i64, i64)> = nm
            .extension_ranges()
            .map(|r| (r.start as i64, r.end as i64 - 1))
            .collect();
        for rg in om.extension_ranges() {
            let (a, b) = (rg.start as i64, rg.end as i64 - 1);
            if !subtract((a, b), &new_ext).is_empty() {
                self.push("EXTENSION_MESSAGE_NO_DELETE", element.clone(), mloc.clone(), format!("Previously present extension range \"[{a},{b}]\" on message \"{mname}\" was deleted."), Subject::NoWire("extensions in that range are reported on their own"));
            }
        }
        // Options with effects on generated code or JSON.
        let accessor = |m: &MessageDescriptor| {
            m.descriptor_proto()
                .options
                .as_ref()
                .map(|x| x.no_standard_descriptor_accessor())
                .unwrap_or(false)
        };
        if !accessor(om) && accessor(nm) {
            self.push("MESSAGE_NO_REMOVE_STANDARD_DESCRIPTOR_ACCESSOR", element.clone(), n.loc(&nfile, &[nm.path(), &[7, 2]].concat()), format!("Message \"{mname}\" changed option \"no_standard_descriptor_accessor\" from \"false\" to \"true\"."), Subject::NoWire(CODEGEN_OPTION));
        }
        if let Some(to) = json_format_lost(
            self.o.json_format(om.full_name(), &om.parent_file()),
            n.json_format(nm.full_name(), &nfile),
        ) {
            self.push(
                "MESSAGE_SAME_JSON_FORMAT",
                element.clone(),
                mloc.clone(),
                format!("Message \"{mname}\" changed JSON format from \"ALLOW\" to \"{to}\"."),
                Subject::NoWire(
                    "JSON field-name conflicts stop being rejected; bytes are unchanged",
                ),
            );
        }
    }

    pub(super) fn comments(
        &mut self,
        of: &FileDescriptor,
        op: &[i32],
        nf: &FileDescriptor,
        np: &[i32],
        element: &str,
    ) {
        // A side without source info has no comments to compare, not deleted ones.
        if !self.o.src.has_source(of.name()) || !self.n.src.has_source(nf.name()) {
            return;
        }
        let a = self.o.src.comments(of.name(), op);
        let b = self.n.src.comments(nf.name(), np);
        if a != b {
            let loc = self.n.loc(nf, np);
            self.change(
                "COMMENT_CHANGED",
                element.to_string(),
                loc,
                format!("The comments on \"{element}\" changed."),
                Bump::Patch,
            );
        }
    }
}
