"""Multiple-choice and yes/no verification on realistic small-model outputs (MedS3 step format)."""

import pytest

from meds3.data.question import MedQuestion
from meds3.verify import extract_answer, verify

NERNST = MedQuestion(
    id="physio-1", question="Which equation gives the equilibrium potential of a single ion?",
    options={"A": "Goldman-Hodgkin-Katz equation", "B": "Fick's law of diffusion", "C": "Ohm's law",
             "D": "Nernst equation"},
    answer="D", task_type="multiple_choice")
CONN = MedQuestion(
    id="medqa-17", question="A 45-year-old man has hypertension, hypokalemia and low plasma renin activity. "
                            "What is the most likely diagnosis?",
    options={"A": "Essential hypertension", "B": "Primary hyperaldosteronism", "C": "Pheochromocytoma",
             "D": "Renal artery stenosis", "E": "Cushing syndrome"},
    answer="B", task_type="multiple_choice")
BETA = MedQuestion(
    id="pharm-3", question="Which drug class is first-line after a myocardial infarction to reduce mortality?",
    options={"A": "ACE inhibitor", "B": "A beta blocker", "C": "Calcium channel blocker", "D": "Thiazide diuretic"},
    answer="B", task_type="multiple_choice")
GENETICS = MedQuestion(
    id="gen-8", question="Hemophilia A follows which inheritance pattern?",
    options={"A": "Autosomal dominant", "B": "Autosomal recessive", "C": "X-linked recessive", "D": "Mitochondrial"},
    answer="C", task_type="multiple_choice")
HEPATITIS = MedQuestion(
    id="micro-5", question="A patient with HBsAg positivity and jaundice most likely has which infection?",
    options={"A": "Hepatitis A", "B": "Hepatitis C", "C": "Hepatitis B", "D": "Hepatitis E"},
    answer="C", task_type="multiple_choice")
PUBMEDQA_MC = MedQuestion(
    id="pubmedqa_21645374", question="Do mitochondria play a role in remodelling lace plant leaves?",
    options={"A": "yes", "B": "no", "C": "maybe"}, answer="A", task_type="multiple_choice")
PUBHEALTH = MedQuestion(
    id="pubhealth-0", question="Infer whether text1 is a fact that can be inferred from text2.",
    options={"A": "true, text1 is a fact.", "B": "false, text1 is not a fact.",
             "C": "mixture, text1 contains both fact and non-fact information."},
    answer="B", task_type="multiple_choice")
BIOASQ_OPEN = MedQuestion(
    id="bioasq_0", question="Can losartan reduce brain atrophy in Alzheimer's disease?", answer="no",
    task_type="yes_no")
BIOASQ_LETTERS = MedQuestion(
    id="bioasq_0L", question="Can losartan reduce brain atrophy in Alzheimer's disease?",
    options={"A": "yes", "B": "no"}, answer="no", task_type="yes_no")

STEPS_B = (
    "Step 0: Let's break down this problem step by step.\n\n"
    "Step 1: The patient has hypertension with hypokalemia and a suppressed renin.\n\n"
    "Step 2: Option A is wrong because essential hypertension does not cause hypokalemia. "
    "Option D would raise renin, so it is not the answer either.\n\n"
    "Step 3: Autonomous aldosterone secretion explains all findings. The answer is (B).")

MULTIPLE_CHOICE_CASES = [
    # (id, question, text, correct, extracted)
    ("step-format", CONN, STEPS_B, True, "B"),
    ("earlier-step-names-other-option", CONN,
     "Step 1: Pheochromocytoma (C) causes episodic hypertension.\n\nStep 2: Option C is incorrect since there "
     "are no paroxysms. Cushing syndrome (E) is less likely.\n\nStep 3: The answer is D.", False, "D"),
    ("revision-wait", CONN,
     "Step 1: Hypertension in a middle-aged man is usually essential, so the answer is A.\n\n"
     "Step 2: Wait, hypokalemia with low renin points to excess aldosterone, so the answer is B.", True, "B"),
    ("revision-to-wrong", CONN,
     "Step 2: The answer is B.\n\nStep 3: Actually, on reflection, catecholamines can also lower potassium, "
     "so the answer is C.", False, "C"),
    ("markdown-answer-label", CONN, "Step 2: Renin is suppressed.\n\n**Answer:** B", True, "B"),
    ("markdown-bold-letter-last-line", CONN,
     "Step 1: Low renin and hypokalemia indicate primary hyperaldosteronism.\n\n**B.**", True, "B"),
    ("lowercase-letter-paren", CONN, "Answer: b) primary hyperaldosteronism", True, "B"),
    ("answer-is-option", CONN, "Step 2: Renal artery stenosis raises renin.\n\nThe answer is option C.", False, "C"),
    ("paren-letter-with-text-line", NERNST, "Step 1: For one ion species the potential is given by...\n\n"
                                            "(D) Nernst equation", True, "D"),
    ("letter-colon-line", CONN, "Step 3: Everything fits.\n\nB: Primary hyperaldosteronism", True, "B"),
    ("boxed", NERNST, "The potential for a single ion is $\\boxed{D}$", True, "D"),
    ("boxed-latex-text", NERNST, "Final Answer: The final answer is $\\boxed{\\text{(D)}}$. I hope it is correct.",
     True, "D"),
    ("correct-answer-is-colon", NERNST, "Therefore, the correct answer is: D. The Nernst equation", True, "D"),
    ("option-text-instead-of-letter", NERNST, "Step 2: Only one ion is involved.\n\nThe answer is the Nernst equation.",
     True, "D"),
    ("option-text-lowercase-no-article", NERNST, "so the answer is nernst equation", True, "D"),
    ("option-text-wrong", NERNST, "The answer is Ohm's law.", False, "C"),
    ("article-a-is-not-letter-a", BETA, "Step 2: Beta blockade lowers mortality.\n\nThe answer is a beta blocker.",
     True, "B"),
    ("lowercase-letter-delimited", BETA, "Step 3: ACE inhibitors come first here, the answer is a.", False, "A"),
    ("lowercase-letter-alone", NERNST, "the answer is d", True, "D"),
    ("lowercase-letter-then-word", CONN, "Step 2: so the answer is b because renin is low.", True, "B"),
    ("weak-uppercase-letter", CONN, "The answer is B because renin is suppressed.", True, "B"),
    ("letter-X-is-not-a-letter", GENETICS, "Step 1: Hemophilia A affects males.\n\nThe answer is X-linked recessive.",
     True, "C"),
    ("invalid-letter", NERNST, "Step 3: None of the first four fit, so the answer is (E).", False, "E"),
    ("two-letters-or", CONN, "Step 3: Both are possible. The answer is A or C.", None, None),
    ("two-letters-paren-and", CONN, "The answer is (B) and (D).", None, None),
    ("reverse-option-is-correct", CONN, "Step 3: Therefore, option B is the correct answer.", True, "B"),
    ("reverse-paren-is-correct", CONN, "Step 2: Option A is incorrect.\n\nStep 3: (E) is correct.", False, "E"),
    ("i-would-choose", NERNST, "Comparing the four, I would choose option D.", True, "D"),
    ("negated-final-statement", CONN, "Step 2: The answer is B.\n\nStep 3: No wait, the answer is not B.", None, None),
    ("denies-another-option-after-answer", CONN,
     "Step 3: The answer is (B).\n\nStep 4: Let me verify: the answer is not A, since renin would be normal.",
     True, "B"),
    ("declines-after-answer", CONN,
     "Step 2: The answer is A.\n\nStep 3: On reflection, the answer is unclear without an aldosterone level.",
     None, None),
    ("letter-ending-a-name-is-not-an-option", HEPATITIS,
     "Step 3: The answer is (C).\n\nStep 4: Indeed, Hepatitis B is the most likely diagnosis given the HBsAg.",
     True, "C"),
    ("option-text-ending-in-letter", HEPATITIS, "Step 2: HBsAg is the surface antigen.\n\nThe answer is hepatitis B.",
     True, "C"),
    ("unclear-undelimited-invalid-letter", NERNST,
     "Step 2: The answer is A.\n\nStep 3: On reflection the answer is E because none of these fit.", None, None),
    ("no-answer", CONN, "Step 1: The patient presents with hypertension and hypokalemia.\n\nStep 2: This suggests "
                        "an endocrine cause that we need to narrow down.", None, None),
    ("empty", CONN, "", None, None),
    ("truncated-after-cue", CONN, "Step 3: Putting it together, the answer is", None, None),
    ("truncated-after-answer", CONN, "Step 3: The answer is (B).\n\nStep 4: To double-check, the aldoste", True, "B"),
    ("ends-with-option-list", CONN, "Step 1: Let us review the options:\nA. Essential hypertension\n"
                                    "B. Primary hyperaldosteronism\nC. Pheochromocytoma", None, None),
    ("fullwidth-unicode-letter", CONN, "The answer is （Ｂ）.", True, "B"),
    ("pubmedqa-mc-word-yes", PUBMEDQA_MC, "Step 2: The results show mitochondrial dynamics during PCD.\n\n"
                                          "The answer is yes.", True, "A"),
    ("pubmedqa-mc-letter", PUBMEDQA_MC, "The answer is (A).", True, "A"),
    ("pubmedqa-mc-word-maybe", PUBMEDQA_MC, "Step 3: The evidence is limited. The answer is maybe.", False, "C"),
    ("pubmedqa-mc-yes-or-no", PUBMEDQA_MC, "The answer is yes or no, depending on the stage.", None, None),
    ("pubhealth-letter-and-text", PUBHEALTH, "The answer is (B) false, text1 is not a fact.", True, "B"),
    ("pubhealth-leading-word-only", PUBHEALTH, "Step 2: Text2 contradicts the claim. The answer is false.",
     True, "B"),
]


@pytest.mark.parametrize("question,text,correct,extracted",
                         [case[1:] for case in MULTIPLE_CHOICE_CASES], ids=[case[0] for case in MULTIPLE_CHOICE_CASES])
def test_multiple_choice(question, text, correct, extracted):
    verdict = verify(text, question)
    assert (verdict.correct, verdict.extracted) == (correct, extracted), verdict.reason
    assert extract_answer(text, question) == extracted


def test_invalid_letter_reason_names_the_options():
    verdict = verify("The answer is (E).", NERNST)
    assert verdict.reason.startswith("letter E not among options A-D")


def test_first_character_checker_defect_is_fixed():
    # MedS3 compared only the first character of the answer, so "(B)" never matched "B"
    assert verify("(B)", CONN).correct is True


YES_NO_CASES = [
    ("stated-no", BIOASQ_OPEN, "Step 1: Trials of losartan showed no change in atrophy.\n\nStep 2: The answer is no.",
     True, "no"),
    ("stated-yes-capital", BIOASQ_OPEN, "The answer is Yes.", False, "yes"),
    ("stated-maybe", BIOASQ_OPEN, "Step 2: The data are mixed, so the answer is maybe.", False, "maybe"),
    ("answer-label-no-comma", BIOASQ_OPEN, "Answer: No, the evidence does not support a reduction.", True, "no"),
    ("negated", BIOASQ_OPEN, "Step 3: The answer is not yes.", None, None),
    ("yes-or-no", BIOASQ_OPEN, "The answer is yes or no depending on dose.", None, None),
    ("last-line-bare", BIOASQ_OPEN, "Step 2: The randomized trial found no effect on brain volume.\n\nNo.", True, "no"),
    ("starts-with-yes-only", BIOASQ_OPEN, "Yes, losartan reduces atrophy in mouse models.", None, None),
    ("revision", BIOASQ_OPEN, "Step 1: The answer is yes.\n\nStep 2: However, the human trial was negative, "
                              "so the answer is no.", True, "no"),
    ("letter-through-options", BIOASQ_LETTERS, "The answer is (B).", True, "no"),
    ("bold-final-answer", BIOASQ_OPEN, "**Final answer:** Maybe", False, "maybe"),
    ("uncertain-after-yes", BIOASQ_OPEN, "Step 1: The answer is yes.\n\nStep 2: Given the small sample, the answer "
                                         "is uncertain.", None, None),
    ("bracketed-letter-before-word", BIOASQ_OPEN, "Final answer: (B) no", True, "no"),
    ("no-statement", BIOASQ_OPEN, "Step 1: Losartan is an angiotensin receptor blocker.", None, None),
]


@pytest.mark.parametrize("question,text,correct,extracted",
                         [case[1:] for case in YES_NO_CASES], ids=[case[0] for case in YES_NO_CASES])
def test_yes_no(question, text, correct, extracted):
    verdict = verify(text, question)
    assert (verdict.correct, verdict.extracted) == (correct, extracted), verdict.reason
    assert extract_answer(text, question) == extracted


def test_pubmedqa_as_yes_no_and_as_choice_agree():
    open_form = MedQuestion(id="p", question="?", answer="yes", task_type="yes_no")
    for text in ("The answer is yes.", "Answer: YES"):
        assert verify(text, open_form).correct is True
        assert verify(text, PUBMEDQA_MC).correct is True
