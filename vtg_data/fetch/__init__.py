"""Getting corpora onto disk: downloads that resume (``http``), safe archive extraction
(``archives``), Hugging Face mirrors at a pinned commit (``mirrors``), a corpus's native files
(``native``) and its videos (``videos``), and the catalogue of what each corpus offers. Every
function takes explicit arguments (the data root, the source folder, whether to verify); the
download stage only orchestrates them.
"""

from vtg_data.fetch.archives import UnsafeArchiveError, extract_archive, find_member, is_archive
from vtg_data.fetch.http import FetchError, download_url, hf_endpoint, hf_token, redact, sha256_path

__all__ = [
    "FetchError",
    "UnsafeArchiveError",
    "download_url",
    "extract_archive",
    "find_member",
    "hf_endpoint",
    "hf_token",
    "is_archive",
    "redact",
    "sha256_path",
]
