"""Rule-based answer checks: read the answer a model stated and judge it.

``verify(text, question)`` returns a :class:`Verdict` (correct True/False, or None when no
answer can be found), ``extract_answer(text, question)`` the normalized answer alone. One
:class:`Verifier` per task type, registered by name: ``multiple_choice`` (choice.py),
``yes_no`` (yesno.py), ``numeric`` (numeric.py), ``exact`` and ``span`` (text.py). A new task
type is one new class decorated with ``@register_verifier("name")``.
"""

from meds3.verify import choice, numeric, text, yesno  # noqa: F401  (registers the verifiers)
from meds3.verify.api import extract_answer, verify
from meds3.verify.choice import MultipleChoiceVerifier
from meds3.verify.core import VERIFIERS, Extraction, Verdict, Verifier, get_verifier, register_verifier
from meds3.verify.numeric import NumericVerifier
from meds3.verify.text import ExactVerifier, SpanVerifier, token_f1
from meds3.verify.yesno import YesNoVerifier

__all__ = ["VERIFIERS", "ExactVerifier", "Extraction", "MultipleChoiceVerifier", "NumericVerifier",
           "SpanVerifier", "Verdict", "Verifier", "YesNoVerifier", "extract_answer", "get_verifier",
           "register_verifier", "token_f1", "verify"]
