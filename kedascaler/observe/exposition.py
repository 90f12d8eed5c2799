"""The per-variant families' /metrics text, written line by line: the bytes `generate_latest` writes, at a tenth of
the cost.

prometheus_client turns each sample into a `Sample` with a labels dict, then validates and escapes every label
name and value of every line: at 10,000 variants (≈ 300,000 lines) that was most of a 3.8 s scrape, with the GIL
held. Here a family is a list of lines; each variant's escaped `name="value"` pairs are built once and kept
across scrapes while the variant is there (`LabelCache`), so a line costs one format of its value. The text is
Prometheus's text format 0.0.4, the same bytes as `generate_latest` over `VariantGauges.collect()` (the tests
hold the two equal).
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client.utils import floatToGoString

from kedascaler.observe.families import VARIANT_LABELS


def escape_value(value: str) -> str:
    """A label value as the text format escapes it: backslash, newline, double quote."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _help(doc: str) -> str:
    return doc.replace("\\", r"\\").replace("\n", r"\n")


class LabelCache:
    """Each variant's escaped label pairs and its whole `{...}` label string, kept for the variants of the last
    scrape (`rotate` drops the others), so an unchanged variant costs no escaping."""

    def __init__(self) -> None:
        self._old: dict[tuple[str, ...], tuple[tuple[str, ...], str]] = {}
        self._new: dict[tuple[str, ...], tuple[tuple[str, ...], str]] = {}

    def variant(self, labels: tuple[str, ...]) -> tuple[tuple[str, ...], str]:
        """(the pairs in VARIANT_LABELS order, the label string of the four sorted by name)."""
        found = self._new.get(labels)
        if found is None:
            found = self._old.get(labels)
            if found is None:
                pairs = tuple(f'{name}="{escape_value(value)}"' for name, value in zip(VARIANT_LABELS, labels,
                                                                                        strict=True))
                found = (pairs, "{" + ",".join(pairs[i] for i in _SORTED_VARIANT) + "}")
            self._new[labels] = found
        return found

    def rotate(self) -> None:
        """After a scrape: keep what it used, forget the rest (a variant that left)."""
        self._old, self._new = self._new, {}


_SORTED_VARIANT = sorted(range(len(VARIANT_LABELS)), key=lambda i: VARIANT_LABELS[i])


class TextFamily:
    """One metric family as text lines; `add_metric` as prometheus_client's families take it."""

    def __init__(self, name: str, doc: str, labelnames: Sequence[str], cache: LabelCache, kind: str = "gauge"
                 ) -> None:
        self.name, self.doc, self.kind, self.cache = name, doc, kind, cache
        self.labelnames = tuple(labelnames)
        self.variant = self.labelnames[:len(VARIANT_LABELS)] == VARIANT_LABELS
        self.sample = f"{name}_total" if kind == "counter" else name
        self.order = sorted(range(len(self.labelnames)), key=lambda i: self.labelnames[i])
        self.lines: list[str] = []
        self.created: list[str] = []

    def _labelstr(self, labels: Sequence[str]) -> str:
        if self.variant:
            pairs, whole = self.cache.variant(tuple(labels[:len(VARIANT_LABELS)]))
            if len(labels) == len(VARIANT_LABELS):
                return whole
            every = pairs + tuple(f'{name}="{escape_value(value)}"' for name, value in
                                  zip(self.labelnames[len(VARIANT_LABELS):], labels[len(VARIANT_LABELS):],
                                      strict=True))
        else:
            every = tuple(f'{name}="{escape_value(value)}"' for name, value in zip(self.labelnames, labels,
                                                                                    strict=True))
        return "{" + ",".join(every[i] for i in self.order) + "}"

    def add_metric(self, labels: Sequence[str], value: float, created: float | None = None) -> None:
        labelstr = self._labelstr(labels)
        self.lines.append(f"{self.sample}{labelstr} {floatToGoString(value)}\n")
        if created is not None:
            self.created.append(f"{self.name}_created{labelstr} {floatToGoString(created)}\n")

    def write(self, out: list[str]) -> None:
        """The family's text, as `generate_latest` writes it: HELP, TYPE, the samples, then `_created` as a gauge."""
        out.append(f"# HELP {self.sample} {_help(self.doc)}\n# TYPE {self.sample} {self.kind}\n")
        out.extend(self.lines)
        if self.created:
            out.append(f"# HELP {self.name}_created {_help(self.doc)}\n# TYPE {self.name}_created gauge\n")
            out.extend(self.created)


__all__ = ["LabelCache", "TextFamily", "escape_value"]
