"""Questions, loaders for public medical QA formats, prompt rendering and seed tasks."""

from meds3.data.errors import DataError, LoadReport, QuestionList, SkippedRecord
from meds3.data.formats import FORMATS, register_format
from meds3.data.loaders import load_questions, save_questions
from meds3.data.question import LETTERS, TASK_TYPES, MedQuestion

__all__ = ["DataError", "FORMATS", "LETTERS", "LoadReport", "MedQuestion", "QuestionList", "SkippedRecord",
           "TASK_TYPES", "load_questions", "register_format", "save_questions"]
