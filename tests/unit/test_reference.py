"""docs/reference.md is generated from the config models and must stay in step."""

from pathlib import Path

from syncd.reference import generate

DOC = Path(__file__).resolve().parents[2] / "docs" / "reference.md"


def test_reference_is_up_to_date():
    assert DOC.read_text(encoding="utf-8") == generate() + "\n", (
        "docs/reference.md is stale: run `syncd reference > docs/reference.md`"
    )


def test_every_connector_and_option_appears():
    text = generate()
    for connector in ("ldap", "sql", "csv", "exchange", "carddav"):
        assert f"## connections of type `{connector}`" in text
    for option in ("`max_deletes`", "`allow_plaintext`", "`on_delete`", "`changes`"):
        assert option in text
