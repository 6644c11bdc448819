"""The API process's cache of loaded models for predict, filled from the database's checkpoint store."""

import threading
from collections import OrderedDict

from service.blobstore import read_to_file
from service.db import session_scope
from service.settings import Settings
from service.tables import Model
from workers.pipeline.predictor import Predictor


class PredictorCache:
    """Least-recently-used cache of `Predictor`s keyed by model id."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._items: OrderedDict[str, Predictor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model: Model) -> Predictor:
        """The loaded predictor for `model`, streaming its checkpoint to local disk the first time."""
        with self._lock:
            if model.id in self._items:
                self._items.move_to_end(model.id)
                return self._items[model.id]
        path = self.settings.cache_dir / "models" / f"{model.id}.safetensors"
        if not path.exists():
            with session_scope(self.settings.sqlalchemy_url) as session:
                read_to_file(session, model.checkpoint_blob_id, path)
        predictor = Predictor.from_checkpoint(path, device="cpu")
        with self._lock:
            self._items[model.id] = predictor
            while len(self._items) > self.settings.predictor_cache_size:
                self._items.popitem(last=False)
        return predictor
