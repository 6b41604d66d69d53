"""The guards against degenerate output: synthetic loops, copies and transcript-shaped replies,
and what the Summarizer does with them through a real backend."""

from __future__ import annotations

from sumctl.runtime.guards import (COPY, LOOP, TRANSCRIPT, copy_coverage, cut_loop,
                                   loop_coverage, quality_flags)

SOURCE = ("Marco: The export fix is done, I will ship it on Friday after the payment tests.\n"
          "Lena: Good. I'll write the payment-test plan and send it to the group by Wednesday.\n"
          "Sam: We have two interviews on Thursday for the data engineer role.\n")


def test_loops_are_flagged_and_cut_short():
    looping = "OK. " * 40
    numbered = " ".join(f"{i}. User Interface {i + 1}. Project Manager" for i in range(1, 30, 2))
    for text in (looping, numbered, "The team met.\n" + "- Marco ships the fix.\n" * 6):
        assert loop_coverage(text) >= 0.5, text
        assert LOOP in quality_flags(text, SOURCE)
        assert len(cut_loop(text)) < len(text) / 3
    fine = ("Marco will ship the export fix on Friday, after Lena's payment tests; Lena sends "
            "the test plan by Wednesday and Sam runs two interviews on Thursday.")
    assert loop_coverage(fine) < 0.2 and quality_flags(fine, SOURCE) == []
    assert cut_loop(fine) == fine


def test_copies_are_flagged():
    copied = ("The export fix is done, I will ship it on Friday after the payment tests. "
              "I'll write the payment-test plan and send it to the group by Wednesday.")
    assert copy_coverage(copied, SOURCE) > 0.9 and COPY in quality_flags(copied, SOURCE)
    summary = "Marco ships the export fix on Friday; Lena plans the payment tests."
    assert copy_coverage(summary, SOURCE) == 0.0


def test_transcript_shaped_replies_are_flagged():
    reply = "Grad A: Mm - hmm. Grad C: Yeah. Grad A: OK, so the thing is done."
    assert TRANSCRIPT in quality_flags(reply, SOURCE, {"Grad A", "Grad C"})
    lines = "Marco: the fix.\nLena: the plan.\nSam: interviews."
    assert TRANSCRIPT in quality_flags(lines, SOURCE, {"Marco", "Lena", "Sam"})
    third_person = "Marco said the fix is done. Lena will send the plan."
    assert quality_flags(third_person, SOURCE, {"Marco", "Lena", "Sam"}) == []
