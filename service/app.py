"""The FastAPI application factory."""

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import errors
from service.api import datasets, health, jobs, models, weights
from service.limits import BodySizeLimit
from service.predictors import PredictorCache
from service.settings import Settings, get_settings

DESCRIPTION = """Graft fine-tunes pretrained torchvision backbones on your images and serves the results.

Register a dataset, post a job spec, follow the job, then call predict on the model it produced.
Errors are `application/problem+json` (RFC 9457)."""


@asynccontextmanager
async def _lifespan(app: FastAPI):
    """Run the sweeper (lost jobs are re-dispatched) for as long as the API serves."""
    from service.sweeper import Sweeper

    settings = app.state.settings
    sweeper = Sweeper(settings).start() if settings.sweep_interval_s > 0 else None
    try:
        yield
    finally:
        if sweeper is not None:
            sweeper.stop()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API for `settings` (the process-wide settings by default)."""
    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level.upper())
    app = FastAPI(title="Graft", version="0.1.0", description=DESCRIPTION, lifespan=_lifespan)
    app.state.settings = settings
    app.state.predictors = PredictorCache(settings)
    app.add_middleware(BodySizeLimit, limits={"/v1/datasets": settings.max_upload_bytes,
                                              "/v1/weights": settings.max_weights_bytes})
    errors.install(app)
    errors.install_database_errors(app)
    for module in (health, datasets, jobs, models, weights):
        app.include_router(module.router)
    return app
