"""`seq2seq evaluate RUN`: loss, perplexity, BLEU and chrF on a split."""

from __future__ import annotations

import json
from pathlib import Path

from seq2seq.cli import common


def add(commands) -> None:
    parser = common.add_run_command(
        commands, "evaluate", "loss, perplexity, BLEU and chrF on a split"
    )
    parser.add_argument(
        "--split", default="test", help="test, val, or a split's file prefix (default: test)"
    )
    parser.add_argument("--data-dir", help="folder holding the split's files")
    parser.add_argument("--output", help="write the translations to this file")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    common.add_decoding_options(parser)


def run(args) -> int:
    from seq2seq.evaluate import evaluate_split

    settings, on = common.decoding_settings(args), common.device(args)
    ckpt = common.load_runs(args, on)
    result = evaluate_split(ckpt, args.split, device=on, data_dir=args.data_dir, settings=settings)
    translations = result.pop("translations")
    if args.output:
        common.write_lines(Path(args.output), translations)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['split']}: {result['sentences']} sentences, checkpoint {ckpt.path}")
    print(f"loss (teacher forced)           {result['loss']:.3f}  ppl {result['ppl']:.2f}")
    if result["free_loss"] is None:
        print("loss (free running, tutorial's) n/a (a CTranslate2 export only scores targets)")
    else:
        print(
            f"loss (free running, tutorial's) {result['free_loss']:.3f}  "
            f"ppl {result['free_ppl']:.2f}"
        )
    bleu = f"BLEU (detokenized, {'lowercased' if ckpt.config.data.lowercase else 'cased'})"
    print(f"{bleu:<32}{result['bleu']:.2f}  {result['bleu_signature']}")
    print(f"chrF                            {result['chrf']:.2f}  {result['chrf_signature']}")
    print(f"BLEU (lowercased spaCy tokens)  {result['bleu_tokenized']:.2f}  (the tutorial's)")
    return 0
