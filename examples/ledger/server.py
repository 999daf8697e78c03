"""The example ledger API (examples/ledger/proto), served by plain Python grpcio: a second API
the testbed did not write, of another domain than the shop's, with gRPC reflection and health.

Prints "serving ledger v1 on HOST:PORT" once it listens (the address last, so the testbed's
ChildServer can read it). Stubs are generated with grpcio-tools into a fresh temporary folder at
each start, so that servers started at once never read each other's half-written files.
Usage: server.py [--addr 127.0.0.1:0] [--rounding half-up|half-even] [--ids counter|random]
       [--without METHOD]

`--rounding half-even` is a build that keeps the schema and rounds conversions to the even
minor unit (112.5 → 112) where the default rounds half up (→ 113): a behaviour change a schema
check cannot see.
"""

import argparse
import importlib
import itertools
import pathlib
import sys
import tempfile
import threading
import time
import uuid
from concurrent import futures
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

HERE = pathlib.Path(__file__).resolve().parent
PROTO = pathlib.Path("ledger/v1/ledger.proto")

# The day's fixed rates, from → to.
RATES = {
    ("USD", "EUR"): Decimal("0.9"),
    ("EUR", "USD"): Decimal("1.1"),
    ("USD", "GBP"): Decimal("0.79"),
    ("GBP", "USD"): Decimal("1.27"),
}


def load_stubs():
    """Generates the messages and stubs into a temporary folder and imports them."""
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="ledger-stubs-")
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{HERE / 'proto'}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        str(PROTO),
    ]
    if protoc.main(args) != 0:
        sys.exit(f"grpc_tools.protoc failed on {PROTO}")
    sys.path.insert(0, out)
    pb2 = importlib.import_module("ledger.v1.ledger_pb2")
    pb2_grpc = importlib.import_module("ledger.v1.ledger_pb2_grpc")
    return pb2, pb2_grpc


def main():
    import grpc
    from google.protobuf.timestamp_pb2 import Timestamp
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default="127.0.0.1:0")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--rounding",
        choices=["half-up", "half-even"],
        default="half-up",
        help="how a converted amount is rounded to a whole minor unit",
    )
    parser.add_argument(
        "--ids",
        choices=["counter", "random"],
        default="counter",
        help="account ids acct-1, acct-2, ... (counter) or random ones",
    )
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        metavar="METHOD",
        help="answer Ledger/METHOD with UNIMPLEMENTED, as a build without it would (repeatable)",
    )
    args = parser.parse_args()
    pb2, pb2_grpc = load_stubs()
    rounding = {"half-up": ROUND_HALF_UP, "half-even": ROUND_HALF_EVEN}[args.rounding]
    accounts = {}
    entries = {}
    ids = itertools.count(1)
    lock = threading.Lock()

    def now():
        stamp = Timestamp()
        stamp.GetCurrentTime()
        return stamp

    def convert(amount, source, target, context):
        if source == target:
            return amount, Decimal(1)
        rate = RATES.get((source, target))
        if rate is None:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"no rate from {source!r} to {target!r}"
            )
        converted = (Decimal(amount) * rate).quantize(Decimal(1), rounding=rounding)
        return int(converted), rate

    def account_of(account_id, context):
        account = accounts.get(account_id)
        if account is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no account {account_id!r}")
        return account

    class Ledger(pb2_grpc.LedgerServicer):
        def Convert(self, request, context):
            amount, rate = convert(
                request.amount_minor, request.from_currency, request.to_currency, context
            )
            return pb2.Quote(
                amount_minor=amount,
                currency=request.to_currency,
                rate=str(rate),
                quoted_at=now(),
            )

        def OpenAccount(self, request, context):
            if not request.owner:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "an account needs an owner")
            if request.currency not in {c for pair in RATES for c in pair}:
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"unknown currency {request.currency!r}"
                )
            with lock:
                if args.ids == "random":
                    account_id = f"acct-{uuid.uuid4().hex[:12]}"
                else:
                    account_id = f"acct-{next(ids)}"
                account = pb2.Account(
                    account_id=account_id,
                    owner=request.owner,
                    currency=request.currency,
                    opened_at=now(),
                )
                accounts[account_id] = account
                entries[account_id] = []
            return account

        def Deposit(self, request, context):
            with lock:
                account = account_of(request.account_id, context)
                amount, _ = convert(
                    request.amount_minor, request.currency, account.currency, context
                )
                if amount <= 0:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "deposit at least 1")
                account.balance_minor += amount
                entries[account.account_id].append(
                    pb2.Entry(
                        amount_minor=amount,
                        balance_minor=account.balance_minor,
                        booked_at=now(),
                    )
                )
                return account

        def GetAccount(self, request, context):
            with lock:
                return account_of(request.account_id, context)

        def ListEntries(self, request, context):
            with lock:
                account_of(request.account_id, context)
                listed = list(entries[request.account_id])
            for entry in listed:
                yield entry
                time.sleep(0.005)

    def aborting(handler):
        def abort(request, context):
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")

        if handler is not None and handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(abort)
        return grpc.unary_unary_rpc_method_handler(abort)

    class Without(grpc.ServerInterceptor):
        """Answers the --without methods as grpcio answers a method it does not serve."""

        def intercept_service(self, continuation, details):
            if details.method.rsplit("/", 1)[-1] not in args.without:
                return continuation(details)
            return aborting(continuation(details))

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.workers),
        interceptors=[Without()] if args.without else [],
    )
    pb2_grpc.add_LedgerServicer_to_server(Ledger(), server)
    service = pb2.DESCRIPTOR.services_by_name["Ledger"].full_name
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", service):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (service, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    host = args.addr.rsplit(":", 1)[0]
    port = server.add_insecure_port(args.addr)
    if port == 0:
        sys.exit(f"cannot listen on {args.addr}")
    server.start()
    print(f"serving ledger v1 on {host}:{port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
