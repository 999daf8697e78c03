//! Service rules: services and methods deleted, request and response types, streaming
//! shapes and method options.

use super::*;

impl Engine<'_, '_> {
    pub(super) fn services(&mut self) {
        let o = self.o;
        let n = self.n;
        for (k, os) in &o.services {
            let Some(ns) = n.services.get(k) else {
                let loc = self.deleted_loc(None, &os.parent_file());
                let first = os.methods().next();
                let subject = match first {
                    Some(m) => Subject::Method { old: m, new: None },
                    None => Subject::NoWire("the service had no methods"),
                };
                self.push(
                    "GRPC_SERVICE_NO_DELETE",
                    os.full_name(),
                    loc,
                    format!(
                        "Service \"{}\" is gone: every call of an old client gets UNIMPLEMENTED.",
                        os.full_name()
                    ),
                    subject,
                );
                continue;
            };
            let nfile = ns.parent_file();
            let sloc = n.loc(&nfile, ns.path());
            self.comments(
                &os.parent_file(),
                os.path(),
                &nfile,
                ns.path(),
                os.full_name(),
            );
            for om in os.methods() {
                let el = om.full_name().to_string();
                let Some(nmeth) = ns.methods().find(|m| m.name() == om.name()) else {
                    for (rule, msg) in [
                        (
                            "RPC_NO_DELETE",
                            format!(
                                "Previously present RPC \"{}\" on service \"{}\" was deleted.",
                                om.name(),
                                ns.name()
                            ),
                        ),
                        (
                            "GRPC_RPC_NO_DELETE",
                            format!(
                                "Method /{}/{} is gone: old clients calling it get UNIMPLEMENTED.",
                                os.full_name(),
                                om.name()
                            ),
                        ),
                    ] {
                        let subject = Subject::Method {
                            old: om.clone(),
                            new: None,
                        };
                        self.push(rule, el.clone(), sloc.clone(), msg, subject);
                    }
                    continue;
                };
                let mloc = n.loc(&nfile, nmeth.path());
                self.comments(&os.parent_file(), om.path(), &nfile, nmeth.path(), &el);
                let subject = Subject::Method {
                    old: om.clone(),
                    new: Some(nmeth.clone()),
                };
                let shape = |c: bool, s: bool| match (c, s) {
                    (false, false) => "unary",
                    (true, false) => "client streaming",
                    (false, true) => "server streaming",
                    (true, true) => "bidirectional streaming",
                };
                let un = |b: bool| if b { "streaming" } else { "unary" };
                for (rule, side, a, b) in [
                    (
                        "RPC_SAME_CLIENT_STREAMING",
                        "client",
                        om.is_client_streaming(),
                        nmeth.is_client_streaming(),
                    ),
                    (
                        "RPC_SAME_SERVER_STREAMING",
                        "server",
                        om.is_server_streaming(),
                        nmeth.is_server_streaming(),
                    ),
                ] {
                    if a != b {
                        let msg = format!(
                            "RPC \"{}\" on service \"{}\" changed from {side} {} to {side} {}.",
                            om.name(),
                            ns.name(),
                            un(a),
                            un(b)
                        );
                        self.push(rule, el.clone(), mloc.clone(), msg, subject.clone());
                    }
                }
                let (oshape, nshape) = (
                    shape(om.is_client_streaming(), om.is_server_streaming()),
                    shape(nmeth.is_client_streaming(), nmeth.is_server_streaming()),
                );
                if oshape != nshape {
                    self.push(
                        "GRPC_RPC_SAME_STREAMING",
                        el.clone(),
                        mloc.clone(),
                        format!(
                            "Method /{}/{} changed from {oshape} to {nshape}.",
                            os.full_name(),
                            om.name()
                        ),
                        subject.clone(),
                    );
                }
                for (rule, grule, what, ot, nt) in [
                    (
                        "RPC_SAME_REQUEST_TYPE",
                        "GRPC_RPC_SAME_REQUEST_TYPE",
                        "request",
                        om.input(),
                        nmeth.input(),
                    ),
                    (
                        "RPC_SAME_RESPONSE_TYPE",
                        "GRPC_RPC_SAME_RESPONSE_TYPE",
                        "response",
                        om.output(),
                        nmeth.output(),
                    ),
                ] {
                    if self.pairing.map(ot.full_name()) == nt.full_name() {
                        continue;
                    }
                    let wire_same = same_shape(&ot, &nt, false, &mut HashSet::new());
                    let json_same = same_shape(&ot, &nt, true, &mut HashSet::new());
                    let tsubject = Subject::Types {
                        old: ot.clone(),
                        new: nt.clone(),
                    };
                    let msg = format!(
                        "RPC \"{}\" on service \"{}\" changed {what} type from \"{}\" to \"{}\".",
                        om.name(),
                        ns.name(),
                        ot.full_name(),
                        nt.full_name()
                    );
                    let raw = Raw {
                        identical_rename: Some((wire_same, json_same)),
                        ..self.raw(rule, &el, mloc.clone(), msg.clone(), tsubject.clone())
                    };
                    self.out.push(raw);
                    if !wire_same {
                        self.push(
                            grule,
                            el.clone(),
                            mloc.clone(),
                            format!("{msg} The types differ on the wire."),
                            tsubject,
                        );
                    }
                }
                let idem = |m: &MethodDescriptor| {
                    m.method_descriptor_proto()
                        .options
                        .as_ref()
                        .map(|x| x.idempotency_level().as_str_name())
                        .unwrap_or("IDEMPOTENCY_UNKNOWN")
                };
                if idem(&om) != idem(&nmeth) {
                    let loc = n.loc(&nfile, &[nmeth.path(), &[4, 34]].concat());
                    self.push("RPC_SAME_IDEMPOTENCY_LEVEL", el.clone(), loc, format!("RPC \"{}\" on service \"{}\" changed option \"idempotency_level\" from \"{}\" to \"{}\".", om.name(), ns.name(), idem(&om), idem(&nmeth)), Subject::NoWire("idempotency_level only changes whether clients may retry or use GET; the bytes are the same"));
                }
            }
            for nmeth in ns.methods() {
                if !os.methods().any(|m| m.name() == nmeth.name()) {
                    let loc = n.loc(&nfile, nmeth.path());
                    self.change(
                        "RPC_ADDED",
                        nmeth.full_name(),
                        loc,
                        format!("Method /{}/{} was added.", ns.full_name(), nmeth.name()),
                        Bump::Minor,
                    );
                }
            }
        }
        self.added(SERVICES);
    }
}
