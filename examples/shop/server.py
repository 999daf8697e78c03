"""The example shop API (examples/shop/proto), served by plain Python grpcio: a server the testbed
did not write, with gRPC reflection and health, for "Put your own API behind the gateway".

Prints "serving shop VERSION on HOST:PORT" once it listens (the address last, so the testbed's
ChildServer can read it). Stubs are generated from proto/ with grpcio-tools on first use (into
generated/).
Usage: server.py --version v1|v2 [--build NAME] [--addr 127.0.0.1:0] [--no-reflection]
       [--descriptors FILE] [--compression gzip|deflate] [--token TOKEN] [--discount PERCENT]
       [--fail-percent PERCENT] [--order-ids counter|random] [--without METHOD]
       [--delay-ms MS]

`--build NAME` serves another build of the version's package, from builds/NAME/ instead of
proto/: `minor` (shop.v1 with Product.description added, a wire-compatible superset) and
`breaking` (shop.v1 with Order.total_cents a double, which breaks the wire), for running two
builds of one package side by side behind the gateway.
"""

import argparse
import importlib
import itertools
import pathlib
import sys
import threading
import time
import uuid
from concurrent import futures

HERE = pathlib.Path(__file__).resolve().parent
PROTO_ROOT = HERE / "proto"
GENERATED = HERE / "generated"
_generate_lock = threading.Lock()


def proto_root(build):
    """Where the protos of `build` (None: the main one) live."""
    return PROTO_ROOT if build is None else HERE / "builds" / build


def load_stubs(version, build=None):
    """Generates (if stale) and imports the messages and stubs of shop/<version> of `build`."""
    root = proto_root(build)
    generated = GENERATED if build is None else GENERATED / "builds" / build
    proto = root / "shop" / version / "shop.proto"
    if not proto.exists():
        sys.exit(f"build {build!r} has no shop {version} ({proto} does not exist)")
    out = generated / "shop" / version / "shop_pb2_grpc.py"
    with _generate_lock:
        if not out.exists() or out.stat().st_mtime < proto.stat().st_mtime:
            from grpc_tools import protoc

            generated.mkdir(parents=True, exist_ok=True)
            args = [
                "protoc",
                f"-I{root}",
                f"--python_out={generated}",
                f"--grpc_python_out={generated}",
                str(proto.relative_to(root)),
            ]
            if protoc.main(args) != 0:
                sys.exit(f"grpc_tools.protoc failed on {proto}")
    if str(generated) not in sys.path:
        sys.path.insert(0, str(generated))
    pb2 = importlib.import_module(f"shop.{version}.shop_pb2")
    pb2_grpc = importlib.import_module(f"shop.{version}.shop_pb2_grpc")
    return pb2, pb2_grpc


def write_descriptors(version, path, build=None):
    """Writes shop/<version> of `build` (with imports) as a binary FileDescriptorSet to `path`."""
    from grpc_tools import protoc

    root = proto_root(build)
    proto = root / "shop" / version / "shop.proto"
    args = [
        "protoc",
        f"-I{root}",
        "--include_imports",
        f"--descriptor_set_out={path}",
        str(proto.relative_to(root)),
    ]
    if protoc.main(args) != 0:
        sys.exit(f"grpc_tools.protoc failed on {proto}")


def products(pb2, version, discount=0):
    """The shop's stock, `discount` percent off; v2 also says how many of each are in stock."""
    items = [
        ("book-1", "The Pragmatic Programmer", 4299, pb2.CATEGORY_BOOKS, ["programming"], 12),
        ("game-1", "Chess set", 2500, pb2.CATEGORY_GAMES, ["classic", "boxed"], 3),
    ]
    out = {}
    for sku, name, price, category, tags, stock in items:
        price = price * (100 - discount) // 100
        product = pb2.Product(sku=sku, name=name, price_cents=price, category=category, tags=tags)
        if version == "v2":
            product.stock = stock
        if "description" in pb2.Product.DESCRIPTOR.fields_by_name:
            product.description = f"{name}, {price / 100:.2f}"
        out[sku] = product
    return out


def main():
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", choices=["v1", "v2"], required=True)
    parser.add_argument(
        "--build",
        choices=["minor", "breaking"],
        help="serve this other build of the version's package (see builds/)",
    )
    parser.add_argument("--addr", default="127.0.0.1:0")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--no-reflection",
        action="store_true",
        help="serve no gRPC reflection (the gateway then needs --descriptors NAME=FILE)",
    )
    parser.add_argument(
        "--compression",
        choices=["gzip", "deflate"],
        help="compress every reply (grpcio does so for clients that accept the encoding)",
    )
    parser.add_argument(
        "--descriptors",
        metavar="FILE",
        help="write this version's FileDescriptorSet to FILE and exit",
    )
    parser.add_argument(
        "--token",
        help="Shop calls must carry 'authorization: Bearer TOKEN', else UNAUTHENTICATED",
    )
    parser.add_argument(
        "--discount",
        type=int,
        default=0,
        metavar="PERCENT",
        help="sell everything PERCENT cheaper (a version that answers with other values)",
    )
    parser.add_argument(
        "--fail-percent",
        type=int,
        default=0,
        metavar="PERCENT",
        help="fail PERCENT of the Shop calls with UNAVAILABLE, spread evenly (a bad build, for"
        " rehearsing a canary's rollback)",
    )
    parser.add_argument(
        "--order-ids",
        choices=["counter", "random"],
        default="counter",
        help="order ids VERSION-1, VERSION-2, ... (counter) or random ones, which differ between"
        " two servers of one version (noise for a replay)",
    )
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        metavar="METHOD",
        help="answer Shop/METHOD with UNIMPLEMENTED, as a build without it would (repeatable)",
    )
    parser.add_argument(
        "--delay-ms",
        type=int,
        default=0,
        metavar="MS",
        help="answer GetProduct MS milliseconds late (a slow build)",
    )
    args = parser.parse_args()
    if not 0 <= args.fail_percent <= 100:
        parser.error("--fail-percent must be 0 to 100")
    if args.descriptors:
        write_descriptors(args.version, args.descriptors, args.build)
        return
    pb2, pb2_grpc = load_stubs(args.version, args.build)
    catalog = products(pb2, args.version, args.discount)
    orders = {}
    order_ids = itertools.count(1)
    lock = threading.Lock()

    class Shop(pb2_grpc.ShopServicer):
        def GetProduct(self, request, context):
            time.sleep(args.delay_ms / 1000)
            product = catalog.get(request.sku)
            if product is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"no product {request.sku!r}")
            return product

        def PlaceOrder(self, request, context):
            if not request.lines:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "an order needs a line")
            if request.WhichOneof("payment") is None:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "an order needs a payment")
            total = 0
            for line in request.lines:
                product = catalog.get(line.sku)
                if product is None:
                    context.abort(grpc.StatusCode.NOT_FOUND, f"no product {line.sku!r}")
                if line.quantity < 1:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "quantity must be at least 1")
                total += product.price_cents * line.quantity
            if request.WhichOneof("payment") == "voucher_code":
                total = 0
            with lock:
                if args.order_ids == "random":
                    order_id = f"{args.version}-{uuid.uuid4().hex[:12]}"
                else:
                    order_id = f"{args.version}-{next(order_ids)}"
                order = pb2.Order(
                    order_id=order_id,
                    lines=request.lines,
                    total_cents=total,
                    status=pb2.ORDER_STATUS_PLACED,
                )
                orders[order_id] = order
            return order

        def WatchOrder(self, request, context):
            with lock:
                order = orders.get(request.order_id)
            if order is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"no order {request.order_id!r}")
            for status in range(order.status, pb2.ORDER_STATUS_DELIVERED + 1):
                yield pb2.OrderUpdate(order_id=order.order_id, status=status)
                time.sleep(0.01)

    compression = {
        None: None,
        "gzip": grpc.Compression.Gzip,
        "deflate": grpc.Compression.Deflate,
    }[args.compression]

    def aborting(handler, code, message):
        """A handler of the same shape as `handler` that ends the call with `code`."""

        def abort(request, context):
            context.abort(code, message)

        if handler is not None and handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(abort)
        return grpc.unary_unary_rpc_method_handler(abort)

    class RequireToken(grpc.ServerInterceptor):
        """Refuses Shop calls without the token (health and reflection stay open)."""

        def intercept_service(self, continuation, details):
            wanted = ("authorization", f"Bearer {args.token}")
            if not details.method.startswith("/shop.") or wanted in details.invocation_metadata:
                return continuation(details)

            return aborting(continuation(details), grpc.StatusCode.UNAUTHENTICATED,
                            "a Bearer token is required")

    class FailSome(grpc.ServerInterceptor):
        """Fails --fail-percent of the Shop calls: call n fails when n * PERCENT / 100 reaches a
        new whole number, so the failures are spread evenly (every fifth call at 20)."""

        def __init__(self):
            self.calls = itertools.count()
            self.lock = threading.Lock()

        def intercept_service(self, continuation, details):
            if not details.method.startswith("/shop."):
                return continuation(details)
            with self.lock:
                n = next(self.calls)
            if (n + 1) * args.fail_percent // 100 == n * args.fail_percent // 100:
                return continuation(details)

            return aborting(continuation(details), grpc.StatusCode.UNAVAILABLE,
                            "failed on purpose (--fail-percent)")

    class Without(grpc.ServerInterceptor):
        """Answers the --without methods as grpcio answers a method it does not serve."""

        def intercept_service(self, continuation, details):
            if details.method.rsplit("/", 1)[-1] not in args.without:
                return continuation(details)
            return aborting(continuation(details), grpc.StatusCode.UNIMPLEMENTED,
                            "Method not found!")

    interceptors = [RequireToken()] if args.token else []
    if args.without:
        interceptors.append(Without())
    if args.fail_percent:
        interceptors.append(FailSome())
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.workers),
        interceptors=interceptors,
        compression=compression,
    )
    pb2_grpc.add_ShopServicer_to_server(Shop(), server)
    service = pb2.DESCRIPTOR.services_by_name["Shop"].full_name
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", service):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if not args.no_reflection:
        # Registers grpc.reflection.v1alpha (grpcio-reflection ≥ 1.62 also answers v1).
        reflection.enable_server_reflection(
            (service, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
    host = args.addr.rsplit(":", 1)[0]
    port = server.add_insecure_port(args.addr)
    if port == 0:
        sys.exit(f"cannot listen on {args.addr}")
    server.start()
    build = f" (build {args.build})" if args.build else ""
    print(f"serving shop {args.version}{build} on {host}:{port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
