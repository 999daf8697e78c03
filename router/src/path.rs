//! Splits a gRPC request path into package, service and method.

/// The parts of a gRPC path `/{package}.{Service}/{Method}`, borrowed from the request URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcPath<'a> {
    /// Protobuf package, such as `increment.v1`. Empty for a service declared without a package.
    pub package: &'a str,
    /// Service name inside the package, such as `Incrementer`.
    pub service: &'a str,
    /// Method name, such as `Increment`.
    pub method: &'a str,
}

impl<'a> GrpcPath<'a> {
    /// Parses `path`, or returns `None` when it is not of the gRPC form `/pkg.Service/Method`.
    pub fn parse(path: &'a str) -> Option<Self> {
        let rest = path.strip_prefix('/')?;
        let (full_service, method) = rest.split_once('/')?;
        if full_service.is_empty() || method.is_empty() || method.contains('/') {
            return None;
        }
        let (package, service) = match full_service.rsplit_once('.') {
            // "/.Service/Method": a dot with no package before it is not a name.
            Some(("", _)) => return None,
            Some((package, service)) => (package, service),
            None => ("", full_service),
        };
        if service.is_empty() {
            return None;
        }
        Some(Self {
            package,
            service,
            method,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_package_service_and_method() {
        let path = GrpcPath::parse("/increment.v2.Incrementer/IncrementStream").unwrap();
        assert_eq!(path.package, "increment.v2");
        assert_eq!(path.service, "Incrementer");
        assert_eq!(path.method, "IncrementStream");
        assert_eq!(GrpcPath::parse("/Svc/M").unwrap().package, "");
    }

    #[test]
    fn rejects_what_is_not_a_grpc_path() {
        // "/.B/M" was found by the grpc_path fuzz target.
        for bad in [
            "", "/", "//", "/a.B", "/a.B/", "a.B/M", "/a.B/M/x", "/a./M", "/.B/M",
        ] {
            assert_eq!(GrpcPath::parse(bad), None, "{bad:?}");
        }
    }
}
