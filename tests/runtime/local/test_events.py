"""The events the loop writes for phases: their wording, and the phases a restarted daemon starts from."""

from __future__ import annotations

from shipyard.runtime.local.events import PHASE_KINDS, phase_event, phases_of
from shipyard.runtime.local.status import APIStatus, Phase
from shipyard.runtime.local.types import DesiredAPI


def test_a_phase_event_never_reads_as_more_up_to_date_than_desired() -> None:
    shrinking = APIStatus("iris", Phase.scaling, desired=3, ready=4, up_to_date=4)
    event = phase_event(DesiredAPI("iris", "v2", 3), shrinking, 5.0)
    assert (event.kind, event.message) == ("scaling", "scaling: version v2; 4 ready, 4 up to date, 3 desired")


def test_a_restarted_daemon_starts_from_the_phase_each_api_last_recorded() -> None:
    assert set(PHASE_KINDS) == {"live", "scaling", "updating", "update-stalled", "crash-looping"}
    found = phases_of({"iris": "live", "wine": "update-stalled", "odd": "deployed"})
    assert found == {"iris": Phase.live, "wine": Phase.stalled}
