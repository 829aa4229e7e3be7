"""The documentation site names every command, option and config key, and its generated parts
come from the code (docs/hooks.py, which `mkdocs build` runs)."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

import seq2seq.config as config

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
LINK = re.compile(r"\]\(([\w./-]+\.md)(?:#[\w-]*)?\)")


def load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = load_hooks()
COMMANDS = sorted(hooks.commands())


def nav_pages(nav) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    items = nav.values() if isinstance(nav, dict) else nav
    return set().union(*(nav_pages(item) for item in items))


def page_and_its_links(page: Path) -> str:
    """A page's text and that of the pages it links to, where a command may leave shared
    options (the decoding options) to one page."""
    text = page.read_text()
    linked = (page.parent / target for target in LINK.findall(text))
    return "\n".join([text, *(p.read_text() for p in linked if p.is_file())])


def config_keys() -> list[str]:
    keys = []
    sections = [("", config.Config), ("data.", config.DataConfig), ("train.", config.TrainConfig)]
    sections += [("model.", cls) for cls in config.MODEL_CONFIGS.values()]
    for prefix, cls in sections:
        for item in dataclasses.fields(cls):
            if not dataclasses.is_dataclass(item.default_factory):
                keys.append(prefix + item.name)
    return sorted(set(keys))


def test_every_command_has_a_page_in_the_nav_that_shows_its_help():
    nav = nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    for name in COMMANDS:
        page = DOCS / "commands" / f"{name}.md"
        assert page.is_file(), f"no page for `seq2seq {name}`: write {page.relative_to(ROOT)}"
        assert f"commands/{name}.md" in nav, f"commands/{name}.md is not in mkdocs.yml's nav"
        assert f"<!-- help: {name} -->" in page.read_text(), f"{page.name} lacks its --help"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_of_a_command_is_described_on_its_page(name):
    text = page_and_its_links(DOCS / "commands" / f"{name}.md")
    missing = [option for option in hooks.options(name) if f"`{option}" not in text]
    assert not missing, f"commands/{name}.md (or a page it links to) never names {missing}"


def test_the_options_are_those_of_the_real_parser():
    assert "--beam-size" in hooks.options("translate")
    assert "--help" not in hooks.options("translate")
    assert "--max-beam-size" in hooks.options("serve")


def test_a_help_mark_becomes_the_commands_help():
    page = "Intro.\n\n<!-- help: translate -->\n"
    text = hooks.on_page_markdown(page, page=None, config=None, files=None)
    assert text.startswith("Intro.\n\n```text\nusage: seq2seq translate")
    assert "--attention-plot FILE" in text and text.rstrip().endswith("```")
    assert "<!--" not in text


def test_every_config_key_is_in_the_configuration_reference():
    reference = hooks.configuration_markdown()
    missing = [key for key in config_keys() if f"`{key}`" not in reference]
    assert not missing, f"the configuration reference lacks {missing}"


def test_config_keys_cover_every_section():
    keys = config_keys()
    assert {"seed", "data.tokenizer", "model.d_model", "model.style", "train.lr"} <= set(keys)


def test_the_results_table_is_read_from_the_evaluation_json():
    table = hooks.results_table("results/gpu")
    row = next(line for line in table.splitlines() if "`tf-512.test.b5.json`" in line)
    assert row.split(" | ")[1:5] == ["test_2016_flickr", "1000", "40.35", "40.19"]


def test_the_readme_is_the_home_page_with_links_into_the_site():
    home = hooks.readme_as_index()
    assert home.startswith("# seq2seq\n")
    assert "](getting-started.md)" in home and "](docs/" not in home
