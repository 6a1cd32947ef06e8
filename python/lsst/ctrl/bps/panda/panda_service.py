# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""`PanDAService`: the ctrl_bps WMS service for PanDA/iDDS.

Each method orchestrates the modules that do the work; none holds logic of
its own beyond turning errors into the return values ctrl_bps expects.
"""

from __future__ import annotations

__all__ = ["PanDAService"]

import logging
from typing import Any

from lsst.ctrl.bps import BaseWmsService, BaseWmsWorkflow, WmsRunReport, WmsStates
from lsst.resources import ResourcePath
from lsst.utils.timer import time_this

from . import run_control
from .config_checks import check_submission_config, relay_hint
from .constants import DEFAULTS_URI
from .exceptions import PanDABpsError, PanDAConfigError, SubmissionCheckError
from .idds_transport import IDDSTransport, transport_from_config
from .panda_workflow import PandaBpsWmsWorkflow
from .remote_build import submit_remote_build
from .reporting import build_run_reports
from .staging import stage_files

_LOG = logging.getLogger(__name__)


class PanDAService(BaseWmsService):
    """Submit BPS workflows to PanDA through iDDS and follow them.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig` or `dict`
        BPS configuration (ctrl_bps passes ``{}`` to read the defaults).
    transport : `IDDSTransport`, optional
        How to reach iDDS; built lazily from the configuration and the
        ``PANDA_*`` environment when not given.
    """

    def __init__(self, config: Any, transport: IDDSTransport | None = None) -> None:
        super().__init__(config)
        self._transport = transport

    @property
    def transport(self) -> IDDSTransport:
        """The iDDS transport, built on first use (`IDDSTransport`)."""
        if self._transport is None:
            self._transport = transport_from_config(self.config)
        return self._transport

    @property
    def defaults(self) -> Any:
        # Docstring inherited from BaseWmsService.defaults.
        from lsst.daf.butler import Config

        return Config(self.defaults_uri)

    @property
    def defaults_uri(self) -> ResourcePath:
        # Docstring inherited from BaseWmsService.defaults_uri.
        return ResourcePath(DEFAULTS_URI)

    def prepare(self, config: Any, generic_workflow: Any, out_prefix: str | None = None) -> BaseWmsWorkflow:
        # Docstring inherited from BaseWmsService.prepare.
        service_class = f"{self.__class__.__module__}.{self.__class__.__name__}"
        with time_this(log=_LOG, level=logging.INFO, prefix=None, msg="Completed PanDA prepare"):
            workflow = PandaBpsWmsWorkflow.from_generic_workflow(
                config, generic_workflow, out_prefix, service_class
            )
            if out_prefix is not None:
                workflow.write(out_prefix)
        return workflow

    def submit(self, workflow: BaseWmsWorkflow, **kwargs: Any) -> BaseWmsWorkflow:
        # Docstring inherited from BaseWmsService.submit.
        if workflow is None:  # ctrl_bps's remote-build path: nothing was prepared here
            if not kwargs.get("remote_build") or kwargs.get("config") is None:
                raise PanDAConfigError(
                    "remoteBuild.enabled", "submit got no workflow and no remote-build section to build one"
                )
            return submit_remote_build(
                self.transport, kwargs["config"], kwargs["remote_build"], kwargs.get("config_file") or "",
                kwargs.get("compute_site"),
            )  # fmt: skip
        if not isinstance(workflow, PandaBpsWmsWorkflow):
            raise PanDABpsError(
                f"submit needs a workflow made by PanDAService.prepare, not {type(workflow).__name__}"
            )
        with time_this(log=_LOG, level=logging.INFO, prefix=None, msg="Completed PanDA submit"):
            settings = workflow.settings
            if workflow.job_archive is not None:  # custom job: its files travel through the cache
                self.transport.put_cache_file(workflow.job_archive)
            if workflow.files_to_stage:
                stage_files(
                    workflow.files_to_stage, workflow.distribution_endpoint, settings.max_copy_workers
                )
            # Before sending: a client killed after the server created the
            # request but before the id is recorded leaves this intent, by
            # which report/cancel find the run (by its unique request name).
            workflow.submit_record.record_intent()
            request_id = self.transport.submit(workflow.request, request_cache=workflow.request_cache)
            workflow.record_submission(request_id)
        _LOG.info("Submitted iDDS request %s (%s)", request_id, workflow.name)
        return workflow

    def restart(self, wms_workflow_id: str) -> tuple[str | None, str | None, str | None]:
        # Docstring inherited from BaseWmsService.restart.
        return run_control.restart(self.transport, wms_workflow_id)

    def list_submitted_jobs(
        self,
        wms_id: str | None = None,
        user: str | None = None,
        require_bps: bool = True,
        pass_thru: str | None = None,
        is_global: bool = False,
    ) -> list[str]:
        # Docstring inherited from BaseWmsService.list_submitted_jobs.
        return run_control.list_submitted(self.transport, wms_id, user)

    def report(  # noqa: PLR0913 (signature fixed by BaseWmsService.report)
        self,
        wms_workflow_id: str | None = None,
        user: str | None = None,
        hist: float = 0,
        pass_thru: str | None = None,
        is_global: bool = False,
        return_exit_codes: bool = False,
    ) -> tuple[list[WmsRunReport], str]:
        # Docstring inherited from BaseWmsService.report.
        return build_run_reports(self.transport, wms_workflow_id, user, hist, return_exit_codes)

    def get_status(
        self, wms_workflow_id: str, hist: float = 1, is_global: bool = False
    ) -> tuple[WmsStates, str]:
        # Docstring inherited from BaseWmsService.get_status.
        return run_control.get_status(self.transport, wms_workflow_id)

    def cancel(self, wms_id: str, pass_thru: str | None = None) -> tuple[bool, str]:
        # Docstring inherited from BaseWmsService.cancel.
        return run_control.cancel(self.transport, wms_id)

    def run_submission_checks(self) -> None:
        # Docstring inherited from BaseWmsService.run_submission_checks.
        check_submission_config(self.config)
        try:
            run_control.submission_checks(self.transport)
        except PanDABpsError as exc:
            raise SubmissionCheckError(f"{exc}{relay_hint()}") from exc

    def ping(self, pass_thru: str | None = None) -> tuple[int, str | None]:
        # Docstring inherited from BaseWmsService.ping.
        return run_control.ping(self.transport)
