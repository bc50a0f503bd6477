"""Which image pairs to match: a time window plus image retrieval on the clip's own vocabulary.

Exhaustive matching costs n(n-1)/2 pair verifications, and most of them are pairs that see nothing
in common; plain sequential matching misses the pairs that close a loop (a walk that comes back, an
orbit that ends where it started), and the model drifts. COLMAP's answer is sequential matching
with vocabulary-tree loop detection, but its vocabulary is a file downloaded on first use, and one
built with `pycolmap.VisualIndex` costs minutes. Here the vocabulary is built from the clip itself:

1. SIFT descriptors already in the COLMAP database (a seeded sample of at most `SAMPLE`);
2. a visual vocabulary of `WORDS` words by k-means (scikit-learn's MiniBatchKMeans, seeded);
3. each image a tf-idf weighted bag of words, L2-normalised (Sivic & Zisserman, "Video Google",
   ICCV 2003); similarity = cosine;
4. pairs: every image with its `window` successors in name order (time order for keyframes), and
   with its `neighbours` most similar images outside that window.

That is n(window + neighbours) pairs at most, linear in n. `exhaustive_is_cheaper` says when the
exhaustive n(n-1)/2 is no more than that: then every pair is matched.

Measured on hololens_office.mp4 (60 keyframes, no intrinsics, global mapper, camera-centre RMS
against the metric truth): exhaustive 1770 pairs, 2.51 cm; window 5 + 10 neighbours ~720 pairs,
2.43 cm, a quarter of the matching time; window 3 + 5: 5.1 cm; sequential (overlap 10, quadratic)
5.0 cm. bench/bench_sfm_anchor.py compares the stage with plain pycolmap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pycolmap

SAMPLE = 10000  # descriptors the vocabulary is trained on
WORDS = 256  # visual words (a few hundred: the clip is small, and each image holds ~1-8 k features)


def exhaustive_is_cheaper(num_images: int, window: int, neighbours: int) -> bool:
    return num_images * (num_images - 1) / 2 <= num_images * (window + neighbours)


def bag_of_words(descriptors: Sequence[np.ndarray], seed: int = 0) -> np.ndarray:
    """tf-idf weighted, L2-normalised word histograms (images x words) of per-image descriptor sets."""
    from sklearn.cluster import MiniBatchKMeans

    stacked = np.concatenate([d for d in descriptors if len(d)]).astype(np.float32)
    rng = np.random.default_rng(seed)
    sample = stacked[rng.choice(len(stacked), min(len(stacked), SAMPLE), replace=False)]
    words = min(WORDS, max(2, len(sample) // 20))
    # random initial centres: k-means++ seeding costs ~10x the whole fit here and buys little for a
    # retrieval vocabulary (ranking, not a clustering, is what is used)
    kmeans = MiniBatchKMeans(n_clusters=words, random_state=seed, n_init=1, init="random", batch_size=4096,
                             max_iter=20)
    kmeans.fit(sample)
    hist = np.zeros((len(descriptors), words))
    for i, d in enumerate(descriptors):
        if len(d):
            hist[i] = np.bincount(kmeans.predict(d.astype(np.float32)), minlength=words)
    idf = np.log(len(descriptors) / np.maximum((hist > 0).sum(axis=0), 1))
    weighted = hist * idf
    norms = np.linalg.norm(weighted, axis=1, keepdims=True)
    return weighted / np.where(norms > 0, norms, 1.0)


def window_and_retrieval_pairs(similarity: np.ndarray, window: int, neighbours: int) -> list[tuple[int, int]]:
    """Index pairs (i < j): each image with its `window` successors and its `neighbours` most similar
    images outside the window (ties broken by index, so the result is deterministic)."""
    n = len(similarity)
    pairs: set[tuple[int, int]] = set()
    for i in range(n):
        pairs.update((i, j) for j in range(i + 1, min(n, i + window + 1)))
        order = np.lexsort((np.arange(n), -similarity[i]))
        outside = [int(j) for j in order if abs(int(j) - i) > window]
        pairs.update((min(i, j), max(i, j)) for j in outside[:neighbours])
    return sorted(pairs)


def write_retrieval_pairs(db: Path, out: Path, window: int, neighbours: int, seed: int = 0) -> int:
    """Choose the pairs for the images in the COLMAP database and write them as COLMAP's pair list
    (`name1 name2` per line) to `out`; returns the number of pairs."""
    database = pycolmap.Database.open(db)
    try:
        images = sorted(database.read_all_images(), key=lambda im: im.name)
        descriptors = [np.asarray(database.read_descriptors(im.image_id).data) for im in images]
    finally:
        database.close()
    words = bag_of_words(descriptors, seed)  # unit rows: their dot products are cosine similarities
    pairs = window_and_retrieval_pairs(words @ words.T, window, neighbours)
    out.write_text("".join(f"{images[a].name} {images[b].name}\n" for a, b in pairs))
    return len(pairs)
