"""The embedding model used by `embed` (chunks) and `summary` (the sample query).

THIS IS A HASHING EMBEDDER, NOT A NEURAL MODEL. It stands in for one so that the
example runs offline with the Python standard library only: no model download, no
network, no GPU, and the same vectors on every machine.

How it works (feature hashing, the "hashing trick"):
  * the text is lower-cased and split into words; common stop words are dropped and a
    crude suffix rule folds plurals and -ing/-ed forms ("retries", "retried" -> "retry");
  * every word and every pair of adjacent words is hashed (BLAKE2b, so it is stable
    across processes, unlike Python's hash()) to one of DIMS positions, with a sign
    taken from another bit of the hash, so that collisions tend to cancel out;
  * term counts are damped (1 + log tf), word pairs weigh half;
  * the vector is scaled to length 1 (L2), so cosine similarity is a dot product.
It matches shared words, not meaning: "automobile" does not find "car".

To use a real model, replace this file and keep its interface: MODEL (a name that
is stored with the vectors), DIMS, and embed(texts) -> list of L2-normalised vectors.
For example, with `pip install sentence-transformers`:

    from sentence_transformers import SentenceTransformer
    MODEL = "sentence-transformers/all-MiniLM-L6-v2"
    DIMS = 384
    _model = SentenceTransformer(MODEL)
    def embed(texts):
        return [v.tolist() for v in _model.encode(list(texts), normalize_embeddings=True)]

Nothing else changes: `embed` recomputes every vector whose model name differs and
`store` replaces them, and `summary` embeds the query with the same model.
"""
import hashlib
import math
import re
from collections import Counter

MODEL = "hashing-bow-v1"
DIMS = 256

STOP_WORDS = frozenset("""
a about above after again all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from
further had has have having he her here hers him his how i if in into is it its itself
just me more most my no nor not now of off on once only or other our ours out over own
same she should so some such than that the their theirs them then there these they this
those through to too under until up very was we were what when where which while who
whom why will with would you your yours
""".split())

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def _stem(word):
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith("ied"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def tokens(text):
    words = (w.split("'")[0] for w in _WORD.findall(text.lower()))
    return [_stem(w) for w in words if w not in STOP_WORDS and len(w) > 1]


def _slot(feature):
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % DIMS, (1.0 if (value >> 63) & 1 else -1.0)


def embed_one(text):
    toks = tokens(text)
    features = Counter(toks)
    for a, b in zip(toks, toks[1:]):
        features[f"{a} {b}"] += 0.5
    vec = [0.0] * DIMS
    for feature, tf in features.items():
        index, sign = _slot(feature)
        weight = (1.0 + math.log(tf)) if tf >= 1 else tf
        vec[index] += sign * weight
    norm = math.sqrt(sum(x * x for x in vec))
    return [x / norm for x in vec] if norm else vec


def embed(texts):
    """Embed a batch of texts; returns one L2-normalised vector (list of DIMS floats) per text."""
    return [embed_one(t) for t in texts]
