"""Decoding for the server: each model's batcher, with the function it runs in its worker
thread (the n-best lists, truncation, and the attention maps within their cap), and waiting for
a result while watching for the client hanging up and the request's deadline."""

from __future__ import annotations

import asyncio

from seq2seq.analysis.attention_maps import attention_maps
from seq2seq.decode import DecodeSettings
from seq2seq.server.batcher import Batcher, Refusal
from seq2seq.server.registry import ServedModel
from seq2seq.server.settings import ServerSettings


class HungUp(Exception):
    """The client closed its connection before its answer was ready."""


def model_batcher(served: ServedModel, settings: ServerSettings) -> Batcher:
    def decode(key: tuple[DecodeSettings, int | None], lines: list[str]):
        """Per line: the n-best list, whether the line was cut to the model's length limit,
        and the best translation's attention map when asked for."""
        decode_settings, attention = key
        translator = served.decoder(decode_settings)
        limit = translator.ckpt.config.data.max_length
        lengths = [len(t) for t in translator.src_tokenizer.tokenize_many(lines)]
        nbest = translator.nbest(lines)
        truncated = [length > limit for length in lengths]
        if attention is None:
            return list(zip(nbest, truncated, [None] * len(lines), strict=True))
        # A map has a row per output token (and <eos>) and a column per source token (and
        # <eos>): counted before any is drawn, so an oversized request costs no memory.
        cells = sum(
            (min(length, limit) + 1) * (len(hyps[0][1].tokens) + 1)
            for length, hyps in zip(lengths, nbest, strict=True)
            if length
        )
        if cells > settings.max_attention_cells:
            raise Refusal(
                413,
                f"the attention maps would hold {cells} weights; this server sends at most "
                f"{settings.max_attention_cells} in one response: ask for fewer or shorter "
                f"sentences, or without attention",
            )
        maps = attention_maps(translator, lines, [hyps[0] for hyps in nbest])
        return list(zip(nbest, truncated, maps, strict=True))

    return Batcher(
        decode,
        name=served.name,
        max_sentences=settings.max_batch_sentences,
        max_wait=settings.max_wait_ms / 1000,
        max_queued=settings.max_queue_sentences,
        stopping=served.stopping,
    )


async def answer(submitted, receive, timeout: float):
    """The batcher's results, unless the client hangs up (HungUp) or `timeout` seconds pass
    (TimeoutError) first; either way the request is withdrawn from the queue."""

    async def hang_up():
        while (await receive())["type"] != "http.disconnect":
            pass

    work, watch = asyncio.ensure_future(submitted), asyncio.ensure_future(hang_up())
    try:
        done, _ = await asyncio.wait(
            {work, watch}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in (work, watch):
            task.cancel()
    if work in done:
        return work.result()
    if watch in done:
        raise HungUp()
    raise TimeoutError()
