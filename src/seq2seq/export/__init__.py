"""Our Transformer runs on CTranslate2, the engine production users decode with on CPUs.

- `convert.py`: `export_run`, a run's best checkpoint as a CTranslate2 model directory, built
  with CTranslate2's own `TransformerSpec` and converter base.
- `manifest.py`: what an export holds besides CTranslate2's files, and how to recognise one.
- `engine.py`: a CTranslate2 translator playing our model's part, so that every command that
  decodes a run decodes an export through the same text pipeline.
- `load.py`: an export directory loaded as a `Checkpoint`.

`ctranslate2` is the optional extra `[fast]`; only `requirement.ctranslate2()` imports it.
"""
