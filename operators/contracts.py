"""The first operator after every DataStream job's Kafka source: a record that breaks its topic's contract
(``gridflow.contracts``) goes to the dead letters with the field and the reason, good records flow on.

Metrics (group ``gridflow``): ``<contract>_accepted`` and ``<contract>_rejected``: with the outputs of
the operators after it, they account for every record the job read.
"""

from __future__ import annotations

from pyflink.common import Types
from pyflink.datastream import OutputTag, ProcessFunction, RuntimeContext

from gridflow.contracts import CONTRACTS, ContractError, dead_letter

REJECTED = OutputTag("contract-rejected", Types.STRING())


class AcceptRecords(ProcessFunction):
    """``Row(record_key, payload)`` -> the payload (its contract holds) or a dead letter on ``REJECTED``."""

    def __init__(self, contract: str, source: str):
        self.contract_name, self.source = contract, source

    def open(self, runtime_context: RuntimeContext):
        self.contract = CONTRACTS[self.contract_name]
        group = runtime_context.get_metrics_group().add_group("gridflow")
        self.accepted = group.counter(f"{self.contract_name}_accepted")
        self.rejected = group.counter(f"{self.contract_name}_rejected")

    def process_element(self, value, ctx):
        key, payload = value[0], value[1]
        if payload is None:
            self.rejected.inc()
            yield REJECTED, dead_letter("", ContractError("", "empty record (a Kafka tombstone)"), self.source)
            return
        try:
            self.contract.decode(payload, key)
        except ContractError as error:
            self.rejected.inc()
            yield REJECTED, dead_letter(payload, error, self.source)
            return
        self.accepted.inc()
        yield payload
