//! Enum rules: enum options and values paired by number.

use super::*;

impl Engine<'_, '_> {
    pub(super) fn enums(&mut self) {
        let o = self.o;
        let n = self.n;
        for (k, oe) in &o.enums {
            let Some(ne) = n.enums.get(k) else { continue };
            let nfile = ne.parent_file();
            let eloc = n.loc(&nfile, ne.path());
            let ename = short(ne.full_name(), ne.package_name());
            let element = oe.full_name().to_string();
            self.comments(&oe.parent_file(), oe.path(), &nfile, ne.path(), &element);
            let (old_reserved, new_reserved) =
                (Reserved::enumeration(oe), Reserved::enumeration(ne));
            let mut seen = BTreeSet::new();
            for ov in oe.values() {
                if !seen.insert(ov.number()) {
                    continue;
                }
                let num = ov.number();
                let vel = format!("{element}.{}", ov.name());
                let subject = Subject::EnumNumber {
                    old: oe.clone(),
                    new: ne.clone(),
                    number: num,
                };
                match ne.get_value(num) {
                    None => {
                        let deleted = Deleted {
                            rules: ENUM_VALUE_DELETED,
                            element: vel,
                            loc: eloc.clone(),
                            what: format!(
                                "Previously present enum value \"{num}\" on enum \"{ename}\" was deleted"
                            ),
                            number: num.into(),
                            name: ov.name(),
                        };
                        self.deleted(deleted, &new_reserved, subject);
                    }
                    Some(nv) => {
                        let new_for: Vec<prost_reflect::EnumValueDescriptor> =
                            ne.values().filter(|v| v.number() == num).collect();
                        let old_names: Vec<String> = oe
                            .values()
                            .filter(|v| v.number() == num)
                            .map(|v| v.name().to_string())
                            .collect();
                        let new_names: Vec<String> =
                            new_for.iter().map(|v| v.name().to_string()).collect();
                        if old_names.iter().any(|x| !new_names.contains(x)) {
                            // One finding per new value with that number, as buf does.
                            let msg = if old_names.len() == 1 && new_names.len() == 1 {
                                format!(
                                    "Enum value \"{num}\" on enum \"{ename}\" changed name from \"{}\" to \"{}\".",
                                    ov.name(),
                                    nv.name()
                                )
                            } else {
                                let q = |v: &[String]| {
                                    v.iter()
                                        .map(|x| format!("\"{x}\""))
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                };
                                format!(
                                    "Enum value \"{num}\" on enum \"{ename}\" changed names from {} to {}.",
                                    q(&old_names),
                                    q(&new_names)
                                )
                            };
                            for v in &new_for {
                                self.push(
                                    "ENUM_VALUE_SAME_NAME",
                                    vel.clone(),
                                    n.loc(&nfile, v.path()),
                                    msg.clone(),
                                    subject.clone(),
                                );
                            }
                        }
                    }
                }
            }
            for ov in oe.values() {
                if let Some(nv) = ne.get_value_by_name(ov.name())
                    && nv.number() != ov.number()
                {
                    self.push("GRPC_ENUM_VALUE_SAME_NUMBER", format!("{element}.{}", ov.name()), n.loc(&nfile, nv.path()), format!("Enum value \"{}\" on enum \"{ename}\" moved from number {} to {}: old senders' {} now means {}.", ov.name(), ov.number(), nv.number(), ov.number(), ne.get_value(ov.number()).map(|v| v.name().to_string()).unwrap_or_else(|| "an unknown value".into())), Subject::EnumNumber { old: oe.clone(), new: ne.clone(), number: ov.number() });
                }
            }
            for nv in ne.values() {
                if oe.get_value(nv.number()).is_none() {
                    self.change(
                        "ENUM_VALUE_ADDED",
                        format!("{element}.{}", nv.name()),
                        n.loc(&nfile, nv.path()),
                        format!(
                            "Enum value \"{}\" = {} was added to enum \"{ename}\".",
                            nv.name(),
                            nv.number()
                        ),
                        Bump::Minor,
                    );
                }
            }
            let on = format!("enum \"{ename}\"");
            self.unreserved(
                "RESERVED_ENUM_NO_DELETE",
                &element,
                &eloc,
                &on,
                (&old_reserved, &new_reserved),
            );
            let (oopen, nopen) = (o.enum_open(oe), n.enum_open(ne));
            if oopen != nopen {
                let t = |b: bool| if b { "open" } else { "closed" };
                // buf points at `option features.enum_type` when there is one.
                let at = n.loc_exact(&nfile, &[ne.path(), &[3, 7, 2]].concat(), eloc.clone());
                self.push("ENUM_SAME_TYPE", element.clone(), at, format!("Enum \"{ename}\" changed from {} to {}.", t(oopen), t(nopen)), Subject::NoWire("unknown numbers are kept (open) or moved to unknown fields (closed); known values are unaffected"));
            }
            if let Some(to) = json_format_lost(
                o.json_format(oe.full_name(), &oe.parent_file()),
                n.json_format(ne.full_name(), &nfile),
            ) {
                self.push(
                    "ENUM_SAME_JSON_FORMAT",
                    element.clone(),
                    eloc,
                    format!("Enum \"{ename}\" changed JSON format from \"ALLOW\" to \"{to}\"."),
                    Subject::NoWire("JSON name conflicts stop being rejected; bytes are unchanged"),
                );
            }
        }
        self.added(ENUMS);
    }
}
