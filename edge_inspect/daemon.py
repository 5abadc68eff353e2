"""The composition root: builds the station core and attaches what the config asks for — the OPC UA
server, the model follower, the shadow, the config keeper, fleet publishing and the web — each of which sees the station only through
the narrow Protocols of station/ports.py. ``edge-inspect run`` and ``edge-inspect demo`` start here."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from .config import StationConfig
from .inspection.inspector import Inspector
from .modelstore import ModelStore
from .station import allocator
from .station.config_keeper import ConfigKeeper
from .station.core import Station
from .station.shadow import Shadow
from .vlm import VisionLanguageModel

if TYPE_CHECKING:
    from .web.app import WebServer

log = logging.getLogger(__name__)


def build_station(
    config: StationConfig,
    config_sha256: str,
    base_dir: Path,
    config_path: Path | None = None,
    model: VisionLanguageModel | None = None,
    inspector: Inspector | None = None,
) -> Station:
    """The station with its attachments, in their start order: OPC UA, the model follower, the shadow, config keeper
    (a station started from a file: versions, edits on disk, saves from the setup pages), fleet
    publishing. ``model`` and ``inspector``: ones made beforehand (tests, the demo), else from the config."""
    tuned = allocator.tune()  # before the station's threads start
    if tuned:
        log.info("memory: %s (docs/performance.md)", tuned)
    station = Station(config, config_sha256, base_dir, model=model, inspector=inspector)
    models = ModelStore.of_storage(station.data_dir, config.storage.models_max_mb)
    for line in station.platform.lines():
        log.info("%s", line)
    if config.opcua is not None and config.opcua.enabled:
        from .opcua import OpcUaServer

        station.attach(OpcUaServer(station, base_dir, station.data_dir))
    alias = config.model.store_alias
    if alias is not None:  # model.bundle: production | candidate — followed while the station runs
        from .logbook.review import judged_any
        from .station.model_follower import ModelFollower

        follower = ModelFollower(
            station,
            models,
            alias,
            functools.partial(_load_version, config, station),
            judged_any=lambda version: judged_any(station.store, version),
        )
        station.models = follower
        station.attach(follower, status=follower.status)
    shadow = Shadow(station, models)
    station.shadow = shadow  # a candidate judging live frames after production, when a run is asked for
    station.attach(shadow, status=shadow.status)
    if config_path is not None:
        keeper = ConfigKeeper(station, config_path)
        station.keeper = keeper
        station.attach(keeper, status=keeper.status)
    if config.fleet is not None and config.fleet.enabled:
        from .fleet.link import FleetLink

        link = FleetLink(station, config.fleet)
        station.attach(link, status=lambda: {"fleet": link.state()})
    return station


def _load_version(config: StationConfig, station: Station, path: str) -> VisionLanguageModel:
    """A model store version the follower swaps in (worker thread): loaded, and given the
    unfamiliar-frame guard's references from the kept commissioning frames where it has none."""
    import numpy as np

    from .station import references

    model = config.model.model_copy(update={"bundle": path}).load()
    try:  # a version whose graphs refuse a frame (a manifest that does not fit them) is not swapped in
        model.encode(np.full((480, 640, 3), 128, np.uint8))
    except Exception as err:
        reason = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise RuntimeError(f"it cannot judge a frame: {reason}") from None
    if config.unfamiliar.enabled:
        try:
            for written in references.prepare(model, station.config.recipes, station.data_dir):
                log.info("unfamiliar-frame guard: %s built from the kept commissioning frames", written)
        except Exception as err:  # noqa: BLE001 - a reference that cannot be built leaves the guard off, not the swap
            log.warning("unfamiliar-frame guard: no reference for model %s: %s", model.sha256[:12], err)
    return model


class Daemon:
    """A built station and, with ``web.enabled``, its web server: started and stopped together."""

    def __init__(self, station: Station):
        self.station = station
        self.web: WebServer | None = None

    async def start(self) -> None:
        """The station first (the PLC sees it online), then the web; a web port in use stops the station
        again (the PLC sees offline) and the OSError goes to the caller."""
        await self.station.start()
        config = self.station.config
        if config.web.enabled:
            from .web.app import serve

            try:
                self.web = await serve(self.station, config)
            except OSError:
                await self.station.stop()
                raise

    async def stop(self) -> None:
        """The station first: the inspection in flight finishes and the PLC sees offline; event streams
        end with its Stopped event, then the web server exits."""
        await self.station.stop()
        if self.web is not None:
            await self.web.stop()
