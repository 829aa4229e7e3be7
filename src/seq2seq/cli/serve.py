"""`seq2seq serve RUN ...`: the JSON API and the web page over trained models."""

from __future__ import annotations

from dataclasses import fields

from seq2seq.cli.common import add_device_option, add_quantize_option, option
from seq2seq.errors import Seq2SeqError


def add(commands) -> None:
    parser = commands.add_parser("serve", help="a JSON API and a web page over trained models")
    parser.add_argument(
        "run",
        nargs="+",
        help="run or checkpoint directory; NAME=PATH names it, PATH+PATH serves an ensemble; "
        "several are served side by side, the first is the default",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (8000)")
    add_device_option(parser)
    parser.add_argument("--num-threads", type=int, help="PyTorch CPU threads (PyTorch's choice)")
    add_quantize_option(parser)
    _server_options(parser)


def _server_options(parser) -> None:
    """One option per field of the server's settings, e.g. --max-beam-size."""
    from seq2seq.server.settings import ServerSettings

    kinds = {
        "bool": {"action": "store_true"},
        "int": {"type": int},
        "float": {"type": float},
        "tuple[str, ...]": {"action": "append", "metavar": "NAME"},
    }
    for item in fields(ServerSettings):
        shown = f" ({item.default})" if item.type in ("int", "float") else ""
        default = None if item.type.startswith("tuple") else item.default
        parser.add_argument(
            option(item.name),
            default=default,
            help=item.metadata["help"] + shown,
            **kinds[item.type],
        )


def run(args) -> int:
    try:
        from seq2seq.server.run import serve
    except ImportError as error:
        raise Seq2SeqError(
            f"seq2seq serve needs FastAPI and uvicorn ({error}); pip install -e '.[serve]'"
        ) from None
    import torch

    from seq2seq.device import pick_device
    from seq2seq.server.settings import ServerSettings

    given = {item.name: getattr(args, item.name) for item in fields(ServerSettings)}
    for item in fields(ServerSettings):
        if item.type.startswith("tuple"):  # a repeated option, or none
            given[item.name] = tuple(given[item.name] or ())
    settings = ServerSettings(**given)
    if args.num_threads is not None and args.num_threads < 1:
        raise Seq2SeqError(f"--num-threads must be at least 1 (got {args.num_threads})")
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    return serve(
        args.run,
        host=args.host,
        port=args.port,
        device=pick_device(args.device),
        settings=settings,
        quantize=args.quantize,
    )
