"""A test task type for the tiny random model, importable by Ray workers.

The tiny random model never writes "The answer is ...", so end-to-end tests use questions of
task type ``parity-test`` whose verifier reads the parity of the response length: about half
of the leaves are "correct", which gives the trainers both kinds of trajectories. Ray actors
register it through the runtime environment's ``worker_process_setup_hook``
(``parity_verifier.setup``), the way a user ships a verifier of their own to a cluster.
"""

from meds3.data.question import MedQuestion
from meds3.verify.core import Extraction, Verdict, Verifier, register_verifier


@register_verifier("parity-test")
class ParityVerifier(Verifier):
    """'even' or 'odd': the parity of the stripped text's length (test only)."""

    def extract(self, text: str, question: MedQuestion) -> Extraction:
        text = text.strip()
        return Extraction(("even", "odd")[len(text) % 2] if text else None, "length parity")

    def check(self, answer: str, question: MedQuestion, **options) -> Verdict:
        return Verdict(answer == question.answer, answer, "parity")


def setup() -> None:
    """Ray's worker_process_setup_hook: importing this module registered the verifier."""
