"""fidkit: the Fréchet Inception Distance and its companions, exactly as published.

Public API::

    fidkit.fid(a, b, protocol=None)         -> float (protocol None: the encoder's default, ttur for Inception)
    fidkit.compare(a, b, protocol=None)     -> FIDResult (fid, n_a, n_b, protocol, ...)
    fidkit.features(source, ...)            -> float32 (N, 2048) pool3 features
    fidkit.compute_stats(source, ...)       -> Statistics (mu, sigma, n; .save(path), Statistics.load(path))
    fidkit.frechet_distance(s1, s2)         -> FrechetResult (float(result) is the FID)
    fidkit.compare(a, b, metrics="fid,kid,pr,is") -> FIDResult with .scores (one pass per source)
    fidkit.compare(a, b, metrics="fid,sfid,adm-pr,is-adm")  -> guided-diffusion's (ADM's) metrics
    fidkit.compare(ref, samples, "nvidia", subset=50000)    -> EDM's/EDM2's FID (their resize and image choice)
    fidkit.adm_evaluate(ref, sample)        -> ADMResult: ADM's table (IS, FID, sFID, precision, recall)
    fidkit.inception_score(source_or_logits) -> MeanStd (mean, std)
    fidkit.kid(a, b)                        -> MeanStd (mean, std)
    fidkit.precision_recall(real, fake)     -> dict precision, recall, density, coverage
    fidkit.FID(reference)                   -> metric: .update(images), .compute(), .reset()
    fidkit.to_uint8(images, (-1, 1))        -> uint8 tensor of the float images' shape, rounded as saving an image does
    fidkit.dataset_images("fashion-mnist-test", n=None) -> uint8 (N, H, W, 3) images of a named dataset
    fidkit.is_image_name("dir/x.png")       -> bool: whether fidkit reads that file of a folder or archive
    fidkit.list_images(folder)              -> list[Path]: the image files fidkit reads there, in its order
    fidkit.evaluate_generator(sample_fn, n, batch_size, reference) -> GeneratorResult (fid, n)
    fidkit.load_weights(weights=None)       -> Weights (.digest, .has_classifier, .origin, .path)

Sources are image folders, sample batches (``.npz`` with ``arr_0``, ``.npy``), statistics
files (``.npz`` with ``mu``/``sigma``, EDM2 ``.pkl``), lists of image paths, or uint8 image
arrays. Protocols: ``ttur`` (default, the original TF FID), ``pytorch-fid``,
``clean``, ``nvidia`` (StyleGAN2-ADA/3, EDM, EDM2), ``dgm-eval-clean``; see :mod:`fidkit.preprocess`.
"""

__version__ = "0.1.0"

from .errors import FidkitError, FidkitWarning  # noqa: E402
from .stats import Statistics  # noqa: E402
from .api import compare, compute_stats, features, fid, frechet_distance  # noqa: E402
from .api import inception_score, kid, load_weights, precision_recall  # noqa: E402
from .api import ADMResult, adm_evaluate  # noqa: E402
from .metric import FID, evaluate_generator, to_uint8  # noqa: E402
from .sources import DATASETS, IMAGE_EXTENSIONS, dataset_images, is_image_name, list_images  # noqa: E402

__all__ = ["fid", "compare", "compute_stats", "features", "frechet_distance", "inception_score", "kid",
           "precision_recall", "adm_evaluate", "ADMResult", "FID", "evaluate_generator", "to_uint8", "dataset_images", "DATASETS", "IMAGE_EXTENSIONS", "is_image_name", "list_images", "load_weights", "Statistics",
           "FidkitError", "FidkitWarning", "__version__"]
