//! Agreement of `math::verify` with the labelled public cases (`tests/data`).
//!
//! Every disagreement is printed with its id, the gold answer, what was extracted and why the
//! verdict came out as it did; the test fails below 99% agreement on either file.

mod cases;

use distillery_verify::math;

fn agreement(name: &str) -> f64 {
    let cases = cases::load(name);
    let mut agree = 0;
    for case in &cases {
        let graded = math::grade(&case.gold, &case.prediction);
        if graded.verdict.is_pass() == case.label() {
            agree += 1;
            continue;
        }
        let extracted = graded.answer.as_ref().map_or("<none>".to_string(), |a| {
            format!("{:?} ({:?})", a.text, a.rule)
        });
        let reason = graded
            .verdict
            .reason()
            .map_or("passed".to_string(), |r| format!("{}: {r}", r.code()));
        println!(
            "DISAGREE {id}: label={label} gold={gold:?} extracted={extracted} verdict={reason}",
            id = case.id,
            label = case.label(),
            gold = math::Reference::new(&case.gold).answer().text(),
        );
    }
    let share = agree as f64 / cases.len() as f64;
    println!(
        "{name}: agreement {:.1}% ({agree}/{})",
        100.0 * share,
        cases.len()
    );
    share
}

#[test]
fn mathverify_cases_agree_with_labels() {
    let share = agreement(cases::MATHVERIFY);
    assert!(share >= 0.99, "agreement {share:.3} below 0.99");
}

#[test]
fn gsm_style_cases_agree_with_labels() {
    let share = agreement(cases::GSM);
    assert!(share >= 0.99, "agreement {share:.3} below 0.99");
}
