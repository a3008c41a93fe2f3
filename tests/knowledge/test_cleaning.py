"""Cleaning: normalisation, garbled-text detection, exact hashes and near-duplicates."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.knowledge.cleaning import NearDuplicateIndex, content_hash, garbled_reason, normalize_text

BUNDLED_COVIDQA = Path(__file__).resolve().parents[2] / "src" / "ragtune" / "demo_data" / "covidqa" / "docs"
# From COVID-QA (CC-BY): numbers, units, abbreviations and statistics must not look garbled.
SCIENTIFIC = ("Abstract: BACKGROUND: Mother-to-child transmission (MTCT) is the main cause of HIV-1 infection in "
              "children worldwide. We found that 7.1% (95% CI 4.3-11.5) of infants were infected in utero (IU), "
              "3.6% intrapartum (IP) and 4.2% postnatally (PP); OR = 2.34, P = 0.03.\n\n"
              "Table 1\nGenotype n IU IP PP\nH1/H1 120 12 7 9\nH1/H3 58 4 2 3\nH3/H3 11 1 0 1")
ARTICLE = ("Dogs were domesticated from wolves more than fifteen thousand years ago. They are loyal companions "
           "and are trained to herd sheep, guard houses and guide blind people through busy streets. Over the "
           "centuries breeders selected them for size, coat, temperament and working ability, which explains the "
           "enormous variety of breeds we see today, from tiny chihuahuas to giant mastiffs. Modern research on "
           "canine cognition shows that dogs read human gestures such as pointing better than chimpanzees do, "
           "and that they form attachment bonds with their owners similar to those of young children. Working "
           "dogs still matter: they detect explosives and drugs at airports, find people buried under snow after "
           "avalanches, and help farmers move flocks across hills where no vehicle can go.")


@pytest.mark.parametrize("raw, expected", [
    ("a\r\nb\rc", "a\nb\nc"),
    ("tab\tseparated\t\tvalues", "tab separated values"),
    ("bell\x07 and nul\x00 and esc\x1b removed", "bell and nul and esc removed"),
    ("ﬁne Ｆｕｌｌ\u00a0width ①", "fine Full width 1"),
    ("many     spaces   here", "many spaces here"),
    ("trailing   \nspaces  \t\n", "trailing\nspaces"),
    ("# Heading\n\n\n\n\nParagraph one.\n\n\nParagraph two.\n", "# Heading\n\nParagraph one.\n\nParagraph two."),
    ("  \n\n  leading and trailing blank lines \n\n", "leading and trailing blank lines"),
    ("zero\u200bwidth and soft\u00adhyphen", "zerowidth and softhyphen"),
])
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected
    assert normalize_text(expected) == expected


def test_normalize_keeps_markdown_structure():
    text = "# Title\n\nIntro.\n\n## Section\n\n- item one\n- item two\n\nEnd."
    assert normalize_text(text) == text


def test_real_scientific_text_is_not_garbled():
    assert garbled_reason(SCIENTIFIC, 20) is None
    assert garbled_reason(ARTICLE, 20) is None
    assert garbled_reason("新型冠状病毒肺炎是由新型冠状病毒感染引起的急性呼吸道传染病。" * 10, 20) is None
    assert garbled_reason("SÃO PAULO É A MAIOR CIDADE DO BRASIL E A REGIÃO CRESCE", 20) is None


def test_covidqa_articles_are_not_garbled():
    """Every paragraph of the bundled COVID-QA articles (scientific text: numbers, units, statistics) passes."""
    paragraphs = [paragraph for path in sorted(BUNDLED_COVIDQA.glob("*.txt"))
                  for paragraph in path.read_text(encoding="utf-8").split("\n\n") if len(paragraph) >= 20]
    assert len(paragraphs) > 50
    flagged = {text[:60]: garbled_reason(normalize_text(text), 20) for text in paragraphs}
    assert {head: reason for head, reason in flagged.items() if reason} == {}


@pytest.mark.parametrize("junk, words", [
    ("", "shorter than 20"),
    ("too short", "shorter than 20"),
    ("Caf\ufffd au lait \ufffd\ufffd cr\ufffd\ufffdme br\ufffdl\ufffde " * 5, "U+FFFD"),
    ("%&$#@!*^ {}|~<> 0123 4567 89 +-=/ " * 10, "letters"),
    ("Wordsgluedtogetherwithoutanyspacesasbrokenpdfextractionsometimesproduces" * 5, "no spaces"),
    ("La tempÃ©rature Ã  GenÃ¨ve est trÃ¨s agrÃ©able en Ã©tÃ©. " * 5, "mojibake"),
])
def test_garbled_text_is_flagged(junk, words):
    reason = garbled_reason(junk, 20)
    assert reason is not None and words in reason


def test_content_hash_is_equal_after_normalisation():
    assert content_hash("# Title\r\n\r\n\r\n\r\nSome   text.  \r\n") == content_hash("# Title\n\nSome text.")
    assert content_hash("ﬁle") == content_hash("file")
    assert content_hash("Some text.") != content_hash("Other text.")
    assert len(content_hash("x")) == 64


def test_near_duplicate_found_for_edited_copy_not_for_unrelated_text():
    assert len(ARTICLE.split()) > NearDuplicateIndex.SHORT_TEXT_WORDS  # word 5-shingles
    index = NearDuplicateIndex(threshold=0.9)
    index.add("dogs.txt", index.signature(ARTICLE))
    edited = ARTICLE.replace("loyal", "faithful")
    assert index.find(index.signature(edited)) == "dogs.txt"
    assert index.find(index.signature(ARTICLE.upper())) == "dogs.txt"
    assert index.find(index.signature(SCIENTIFIC)) is None
    assert index.find(index.signature(ARTICLE.replace("dogs", "cats").replace("Dogs", "Cats"))) is None


def test_near_duplicate_of_short_texts():
    index = NearDuplicateIndex(threshold=0.9)
    short = ("Dogs were domesticated from wolves more than fifteen thousand years ago. They are loyal companions "
             "and are trained to herd sheep and guide blind people.")
    index.add("dogs", index.signature(short))
    index.add("hi", index.signature("Hello there"))
    assert index.find(index.signature(short.replace("loyal", "faithful"))) == "dogs"
    assert index.find(index.signature("hello, there!")) == "hi"
    assert index.find(index.signature("Cats sleep most of the day")) is None


def test_signatures_are_deterministic_bytes_and_index_can_be_rebuilt():
    first, second = NearDuplicateIndex(), NearDuplicateIndex()
    signature = first.signature(ARTICLE)
    assert isinstance(signature, bytes) and len(signature) == 128 * 8
    assert signature == second.signature(ARTICLE)
    second.add("a", signature)
    second.add("a", signature)  # re-adding replaces
    assert len(second) == 1 and second.find(first.signature(ARTICLE)) == "a"
    second.remove("a")
    second.remove("never added")
    assert len(second) == 0 and second.find(signature) is None
    with pytest.raises(ValueError, match="num_perm"):
        NearDuplicateIndex(num_perm=64).find(signature)


def test_threshold_one_only_matches_identical_word_sets():
    index = NearDuplicateIndex(threshold=1.0)
    index.add("a", index.signature(ARTICLE))
    assert index.find(index.signature(ARTICLE + " ")) == "a"
    assert index.find(index.signature(ARTICLE.replace("loyal", "faithful"))) is None
