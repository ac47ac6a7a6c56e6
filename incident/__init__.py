"""Incident policy, lifecycle, the incidents topic, sinks, RCA and the playbook."""

__all__: list[str] = []
