"""The documentation site names every command, option and config key, and its generated parts
come from the code (docs/hooks.py, which `mkdocs build` runs)."""

from __future__ import annotations

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


def built_page(name: str) -> str:
    """A page as `mkdocs build` gets it, generated ones included (the hooks run as mkdocs
    runs them)."""
    from mkdocs.config import load_config as load_site
    from mkdocs.structure.files import get_files

    site = load_site(str(ROOT / "mkdocs.yml"))
    files = site.plugins.on_files(get_files(site), config=site)
    return files.get_file_from_path(name).content_string


ROW = re.compile(r"^\| `([\w.]+)` \| `([^`]*)` \| ([^|]+) \|", re.MULTILINE)


def parser_keys(section: str, before: list[str]) -> set[str]:
    """The keys the config parser knows in a section, as its refusal of an unknown one lists
    them."""
    unknown = f"{section}.no_such_key" if section else "no_such_key"
    with pytest.raises(config.ConfigError) as refused:
        config.load_config(None, [*before, f"{unknown}=1"])
    (listed,) = re.findall(r"\(valid keys: ([^)]*)\)", str(refused.value))
    return {f"{section}.{key}" if section else key for key in listed.split(", ")}


def outside_values(valid: str) -> list[str]:
    """Values just outside the range the page gives ("at least 1", "in [0, 1)"), as override
    text: a list key gets a list of them."""
    kind, _, rule = valid.partition(", ")
    rule = {"positive": "more than 0", "0 or more": "at least 0"}.get(rule, rule)
    found = re.fullmatch(r"(?:numbers )?(at least|more than|at most|less than) (-?[\d.]+)", rule)
    interval = re.fullmatch(r"(?:numbers )?in ([\[(])(-?[\d.]+), (-?[\d.]+)([\])])", rule)
    values = []
    if found:
        bound = float(found[2])
        step = {"at least": -1, "more than": 0, "at most": 1, "less than": 0}[found[1]]
        values.append(bound + step)
    elif interval:
        low, high = float(interval[2]), float(interval[3])
        values += [low - 1 if interval[1] == "[" else low, high + 1 if interval[4] == "]" else high]
    elif rule:
        return []  # words of their own ("one plain path component"): not a range
    whole = "an integer" in kind
    texts = [str(int(value)) if whole else str(value) for value in values]
    if "list" in kind:
        count = int(m[1]) if (m := re.search(r"list of (\d+)", kind)) else 1
        return ["[" + ", ".join([text] * count) + "]" for text in texts]
    return texts


def test_the_configuration_page_lists_every_key_the_parser_reads_as_it_reads_it():
    """The page mkdocs builds, against the parser: each table holds the keys the parser knows
    in its section, each default is what the parser gives when the key is left out, each
    listed choice is accepted and each range's edges are where the parser starts refusing."""
    page = built_page("configuration.md")
    sections = page.split("\n## ")[1:]
    headings = [section.splitlines()[0] for section in sections]
    names = {re.match(r"`(\w+)`", heading)[1] for heading in headings[1:]}
    assert names == {"data", "model", "train"}, headings
    for heading, section in zip(headings, sections, strict=True):
        model_type = re.search(r"model\.type: (\w+)", heading)
        before = [f"model.type={model_type[1]}"] if model_type else []
        rows = ROW.findall(section)
        prefix = re.match(r"`(\w+)`", heading)
        known = parser_keys(prefix[1] if prefix else "", before) - names
        assert {key for key, _, _ in rows} == known, heading
        defaults = config.load_config(None, before)
        for key, default, valid in rows:
            assert config.load_config(None, [*before, f"{key}={default}"]) == defaults, key
            choices = re.fullmatch(r"one of (.*)", valid.strip())
            for choice in choices[1].split(", ") if choices else []:
                config.load_config(None, [*before, f"{key}={choice}"])
            for value in ["not-a-choice"] if choices else outside_values(valid.strip()):
                with pytest.raises(config.ConfigError, match=re.escape(f"{key}=")):
                    config.load_config(None, [*before, f"{key}={value}"])


def test_the_results_table_is_read_from_the_evaluation_json():
    table = hooks.results_table("results/gpu")
    row = next(line for line in table.splitlines() if "`tf-512.test.b5.json`" in line)
    assert row.split(" | ")[1:5] == ["test_2016_flickr", "1000", "40.35", "40.19"]


def test_the_readme_is_the_home_page_with_links_into_the_site():
    home = hooks.readme_as_index()
    assert home.startswith("# seq2seq\n")
    assert "](getting-started.md)" in home and "](docs/" not in home
