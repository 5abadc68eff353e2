"""The specification's methods (OPC 40100-1) on this appliance: the handlers, by path below the VisionSystem.

Every handler runs on the OPC UA loop after the argument checks (arguments.py) and the role check
(security.RolePermissions). Outputs follow the nodeset's OutputArguments, ``Error`` (Int32) last:
0 when the call did what it says; a call that cannot be done answers a Bad status instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from asyncua import ua

from .arguments import ArgumentError
from .results import id_text, ident, page, variants

if TYPE_CHECKING:
    from ..station.ports import OpcUaPort
    from .results import ResultMemory

log = logging.getLogger(__name__)
T = TypeVar("T")

V = ua.VariantType
OK = (0, V.Int32)  # the Error output: no error
PART_ID_MAX = 20  # the PLC map's part_id register holds 20 characters
TRI_FALSE, TRI_TRUE = 0, 1  # TriStateBooleanDataType (2: don't care)


def bad(code: int) -> ua.StatusCode:
    return ua.StatusCode(code)


class VisionMethods:
    """Mixed into OpcUaServer: the handlers see its station, its recipe and its result memory (and call
    its _write, _show_now, _state_now, _on_station and _begin_job)."""

    station: OpcUaPort
    active_recipe: int
    prepared: bool
    results: ResultMemory
    config_loaded: datetime
    _halted: bool

    if TYPE_CHECKING:  # OpcUaServer's, which the handlers call

        async def _write(self, path: str, value: Any, vtype: ua.VariantType, array: bool = False) -> None: ...

        async def _show_now(self) -> None: ...

        def _state_now(self) -> tuple[str, str]: ...

        async def _on_station(self, coro: Coroutine[Any, Any, T]) -> T: ...

        async def _begin_job(self, recipe: int, part_id: str, meas_id: str = "") -> str | None: ...

    def handlers(self) -> dict[str, Any]:
        sm, auto = "VisionStateMachine", "VisionStateMachine.AutomaticModeStateMachine"
        return {
            f"{sm}.Halt": self._halt,
            f"{sm}.Reset": self._reset,
            f"{sm}.SelectModeAutomatic": self._select_mode_automatic,
            f"{auto}.StartSingleJob": self._start_single_job,
            f"{auto}.StartContinuous": self._start_continuous,
            f"{auto}.Stop": self._stop_job,
            f"{auto}.Abort": self._abort,
            "RecipeManagement.PrepareRecipe": self._prepare_recipe,
            "RecipeManagement.UnprepareRecipe": self._unprepare_recipe,
            "RecipeManagement.GetRecipeListFiltered": self._get_recipe_list_filtered,
            "ResultManagement.GetResultById": self._get_result_by_id,
            "ResultManagement.GetResultComponentsById": self._get_result_components_by_id,
            "ResultManagement.GetResultListFiltered": self._get_result_list_filtered,
            "ConfigurationManagement.ActivateConfiguration": self._activate_configuration,
            "ConfigurationManagement.GetConfigurationById": self._get_configuration_by_id,
            "ConfigurationManagement.GetConfigurationList": self._get_configuration_list,
            "VisionSystem.RecipeManagement.GetRecipeList": self._get_recipe_list,  # the station's own
        }

    # -- VisionStateMachine ------------------------------------------------------------------------
    async def _halt(self, parent, cause: ua.Variant, description: ua.Variant):
        """Halted for OPC UA: jobs are refused until Reset (the station and its PLC link go on)."""
        if self._halted:
            return bad(ua.StatusCodes.BadInvalidState)
        self._halted = True
        log.warning("OPC UA: halted by a client (cause %s: %s)", cause.Value, description.Value)
        await self._show_now()
        return variants([OK])

    async def _reset(self, parent, cause: ua.Variant, description: ua.Variant):
        """Halted or Error → Preoperational, then Operational as soon as the station runs without fault."""
        if not self._halted and self._state_now()[0] != "Error":
            return bad(ua.StatusCodes.BadInvalidState)
        self._halted = False
        log.info("OPC UA: reset by a client (cause %s: %s)", cause.Value, description.Value)
        await self._show_now()
        return variants([OK])

    async def _select_mode_automatic(self, parent):
        return variants([OK])  # automatic mode is the only one

    # -- AutomaticModeStateMachine -----------------------------------------------------------------
    async def _start_single_job(self, parent, meas, part, recipe, product, parameters):
        part_id, meas_id = id_text(part.Value), id_text(meas.Value)
        if len(part_id) > PART_ID_MAX:
            raise ArgumentError(1, ua.StatusCodes.BadOutOfRange, f"at most {PART_ID_MAX} characters")
        if id_text(product.Value):
            raise ArgumentError(3, ua.StatusCodes.BadInvalidArgument, "no products on this station")
        number = self._recipe_number(recipe.Value, 2, default=self.active_recipe)
        job_id = await self._on_station(self._begin_job(number, part_id, meas_id))
        if job_id is None:
            return bad(ua.StatusCodes.BadInvalidState)
        return variants([(ident("JobIdDataType", job_id), None), OK])

    async def _start_continuous(self, parent, *args):
        return bad(ua.StatusCodes.BadNotSupported)  # free-run is triggers.interval_s in station.yaml

    async def _stop_job(self, parent, cause, description):
        return variants([OK])  # ends ContinuousExecution, which never runs here

    async def _abort(self, parent, cause, description):
        if self.station.inspecting:
            return bad(ua.StatusCodes.BadInvalidState)  # an inspection is not interrupted
        return variants([OK])

    # -- RecipeManagement ----------------------------------------------------------------------
    def _recipe_number(self, value: Any, index: int, default: int | None = None) -> int:
        text = id_text(value)
        if not text and default is not None:
            return default
        recipe = self.station.config.recipe(int(text)) if text.isdigit() else None
        if recipe is None:
            raise ArgumentError(index, ua.StatusCodes.BadInvalidArgument, f"no recipe {text!r}")
        return recipe.number

    async def _use_recipe(self, number: int, prepared: bool) -> None:
        recipe = self.station.config.recipe(number)
        self.active_recipe, self.prepared = number, prepared
        await self._write("RecipeManagement.ActiveRecipeId", str(number), V.String)
        await self._write("RecipeManagement.ActiveRecipeName", recipe.name if recipe else "", V.String)

    async def _prepare_recipe(self, parent, external: ua.Variant, internal: ua.Variant):
        """The recipe StartSingleJob runs when its RecipeId is empty (integrator)."""
        index = 0 if id_text(external.Value) else 1
        number = self._recipe_number(external.Value if index == 0 else internal.Value, index)
        await self._use_recipe(number, True)
        log.info("OPC UA: recipe %d prepared", number)
        return variants([(ident("RecipeIdInternalDataType", str(number)), None), (True, V.Boolean), OK])

    async def _unprepare_recipe(self, parent, external: ua.Variant, internal: ua.Variant):
        index = 0 if id_text(external.Value) else 1
        number = self._recipe_number(external.Value if index == 0 else internal.Value, index)
        if not self.prepared or number != self.active_recipe:
            return bad(ua.StatusCodes.BadInvalidState)
        await self._use_recipe(self.station.config.triggers.recipe, False)
        return variants([(ident("RecipeIdInternalDataType", str(number)), None), OK])

    async def _get_recipe_list_filtered(self, parent, external, product, prepared, most, start, timeout):
        if id_text(product.Value):
            numbers = []  # no products on this station
        else:
            wanted = id_text(external.Value)
            numbers = [r.number for r in self.station.config.recipes if not wanted or str(r.number) == wanted]
        if prepared.Value in (TRI_FALSE, TRI_TRUE):
            numbers = [
                n for n in numbers if (self.prepared and n == self.active_recipe) == (prepared.Value == TRI_TRUE)
            ]
        complete, chosen = page(numbers, most.Value, start.Value)
        ids = [ident("RecipeIdInternalDataType", str(n)) for n in chosen]
        return variants([(complete, V.Boolean), (len(numbers), V.UInt32), (0, V.UInt32), (ids, None), OK])

    async def _get_recipe_list(self, parent):
        recipes = self.station.config.recipes
        return variants([([str(r.number) for r in recipes], V.String), ([r.name for r in recipes], V.String)])

    # -- ResultManagement ----------------------------------------------------------------------
    def _kept(self, value: Any) -> Any:
        result = self.results.by_id(id_text(value))
        if result is None:
            raise ArgumentError(0, ua.StatusCodes.BadNotFound, f"no result {id_text(value)!r} in memory")
        return result

    async def _get_result_by_id(self, parent, result_id: ua.Variant, timeout: ua.Variant):
        return variants([(0, V.UInt32), (self._kept(result_id.Value), None), OK])

    async def _get_result_components_by_id(self, parent, result_id: ua.Variant, timeout: ua.Variant):
        r = self._kept(result_id.Value)
        return variants([
            (False, V.Boolean), (0, V.UInt32), (r.IsPartial, V.Boolean), (False, V.Boolean), (r.ResultState, V.Int32),
            (r.MeasId, None), (r.PartId, None), (r.ExternalRecipeId, None), (r.InternalRecipeId, None),
            (r.ProductId, None), (r.ExternalConfigurationId, None), (r.InternalConfigurationId, None),
            (r.JobId, None), (r.CreationTime, V.DateTime), (r.ProcessingTimes, None), ([], V.Variant), OK,
        ])  # fmt: skip

    async def _get_result_list_filtered(self, parent, state, *args):
        *ids, most, start, timeout = args
        names = ("MeasId", "PartId", "ExternalRecipeId", "InternalRecipeId", "ExternalConfigurationId",
                 "InternalConfigurationId", "ProductId", "JobId")  # fmt: skip
        found = self.results.filtered(state.Value or 0, {n: id_text(v.Value) for n, v in zip(names, ids, strict=True)})
        complete, chosen = page(found, most.Value, start.Value)
        return variants([(complete, V.Boolean), (len(found), V.UInt32), (0, V.UInt32), (chosen, None), OK])

    # -- ConfigurationManagement: the kept versions of station.yaml -------------------------------
    async def _configurations(self) -> list[Any]:
        """Every kept version (newest first; the log keeps them with each save, apply and rollback),
        the running one included even where the log cannot be read."""
        try:
            versions = await asyncio.to_thread(self.station.config_versions)
        except Exception:  # a full or damaged disk: the running configuration is still known
            versions = []
        listed = [self._configuration(v["sha256"], v["id"], v["ts_unix"]) for v in versions]
        if not any(v["sha256"] == self.station.config_sha256 for v in versions):
            listed.insert(0, self._configuration(self.station.config_sha256, None, None))
        return listed

    def _configuration(self, sha256: str, version_id: int | None, at: float | None) -> Any:
        return ua.ConfigurationDataType(
            InternalId=ident("ConfigurationIdDataType", sha256),
            ExternalId=ident("ConfigurationIdDataType", str(version_id)) if version_id is not None else None,
            HasTransferableDataOnFile=False,
            LastModified=datetime.fromtimestamp(at, timezone.utc) if at is not None else self.config_loaded,
        )

    async def _find_configuration(self, value: Any) -> Any:
        wanted = id_text(value)
        for configuration in await self._configurations():
            if id_text(configuration.InternalId) == wanted:
                return configuration
        raise ArgumentError(0, ua.StatusCodes.BadNotFound, f"no kept configuration {wanted!r}")

    async def _activate_configuration(self, parent, internal: ua.Variant):
        found = await self._find_configuration(internal.Value)
        if id_text(found.InternalId) != self.station.config_sha256:
            # Changing what the station inspects with is the integrator's, on the setup page (rollback
            # with its diff and audit), never a remote client's.
            raise ArgumentError(0, ua.StatusCodes.BadNotSupported, "activate another version on the setup page")
        return variants([OK])  # it is active

    async def _get_configuration_by_id(self, parent, internal: ua.Variant, timeout: ua.Variant):
        return variants([(0, V.UInt32), (await self._find_configuration(internal.Value), None), OK])

    async def _get_configuration_list(self, parent, most, start, timeout):
        listed = await self._configurations()
        complete, chosen = page(listed, most.Value, start.Value)
        return variants([(complete, V.Boolean), (len(listed), V.UInt32), (0, V.UInt32), (chosen, None), OK])
