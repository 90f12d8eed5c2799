"""VariantKey: equal names are the same key, in this process and in another with its own hash seed."""

from __future__ import annotations

import pickle
import subprocess
import sys

from kedascaler.engine.keys import VariantKey


def test_equal_names_are_one_key_and_the_hash_is_the_names_tuples():
    a, b = VariantKey("demo", "llama-h100"), VariantKey("demo", "llama-h100")
    assert a == b and hash(a) == hash(b) == hash(("demo", "llama-h100"))
    assert {a: 1}[b] == 1 and VariantKey("demo", "llama-a100") != a
    assert repr(a) == "VariantKey(namespace='demo', name='llama-h100')"


def test_a_pickled_key_finds_its_entry_in_a_process_with_another_hash_seed():
    """The simulator's suite runs scenarios in worker processes: a key pickled here must work out its hash there."""
    code = ("import pickle, sys; k = pickle.loads(sys.stdin.buffer.read()); "
            "from kedascaler.engine.keys import VariantKey; "
            "print({VariantKey('demo', 'llama-h100'): 'found'}.get(k, 'lost'))")
    for seed in ("1", "2", "3"):
        out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(VariantKey("demo", "llama-h100")),
                             capture_output=True, env={"PYTHONHASHSEED": seed, "PATH": ""}, check=True, cwd=".")
        assert out.stdout.decode().strip() == "found"
