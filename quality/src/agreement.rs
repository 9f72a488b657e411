//! Agreement statistics of a bounty: Krippendorff's alpha (nominal), the
//! crowd's confusion against a reference labeling, and each contributor's
//! accuracy against it.

use crate::em::Dataset;

/// Krippendorff's alpha for nominal data: `1 - D_o / D_e`, where `D_o` is
/// the observed disagreement between pairs of values within units and
/// `D_e` the disagreement expected by chance from all pairable values.
///
/// `units` yields each unit's values (one per coder who coded it); units
/// with fewer than two values cannot be paired and are skipped. Returns
/// `None` when alpha is undefined: fewer than two pairable values, or a
/// single value used throughout (no variation to disagree about).
///
/// With the coincidence matrix `o[c][k] = sum over units of
/// n_uc * (n_uk - [c = k]) / (m_u - 1)` and its marginals `n_c`, `n`:
/// `alpha = 1 - (n - 1) * (n - sum_c o[c][c]) / (n^2 - sum_c n_c^2)`.
pub fn alpha_nominal<'a>(
    classes: usize,
    units: impl IntoIterator<Item = &'a [u16]>,
) -> Option<f64> {
    let mut counts = vec![0u64; classes];
    let mut marginals = vec![0.0_f64; classes];
    let mut diagonal = 0.0_f64;
    for unit in units {
        let m = unit.len();
        if m < 2 {
            continue;
        }
        counts.iter_mut().for_each(|c| *c = 0);
        for &v in unit {
            if let Some(c) = counts.get_mut(v as usize) {
                *c += 1;
            }
        }
        let scale = 1.0 / (m as f64 - 1.0);
        for (c, &n_c) in counts.iter().enumerate() {
            if n_c > 0 {
                marginals[c] += n_c as f64;
                diagonal += (n_c * (n_c - 1)) as f64 * scale;
            }
        }
    }
    let n: f64 = marginals.iter().sum();
    let expected = n * n - marginals.iter().map(|x| x * x).sum::<f64>();
    if n < 2.0 || expected <= 0.0 {
        return None;
    }
    Some(1.0 - (n - 1.0) * (n - diagonal) / expected)
}

/// Krippendorff's alpha over a dataset's items.
pub fn dataset_alpha(data: &Dataset) -> Option<f64> {
    let units: Vec<Vec<u16>> = (0..data.items())
        .map(|i| data.item_answers(i).map(|(_, l)| l).collect())
        .collect();
    alpha_nominal(data.classes(), units.iter().map(Vec::as_slice))
}

/// `matrix[k * classes + l]`: how many answers said `l` about items whose
/// reference class is `k`. Items without a reference are left out.
pub fn confusion_against(data: &Dataset, reference: &[Option<u16>]) -> Vec<u64> {
    let c = data.classes();
    let mut m = vec![0u64; c * c];
    for a in data.iter() {
        if let Some(Some(k)) = reference.get(a.item as usize) {
            m[*k as usize * c + a.label as usize] += 1;
        }
    }
    m
}

/// Per-class recall and precision of the crowd's single answers from a
/// confusion matrix (`None` where a class never occurs).
pub fn per_class(matrix: &[u64], classes: usize) -> Vec<(Option<f64>, Option<f64>)> {
    (0..classes)
        .map(|k| {
            let row: u64 = (0..classes).map(|l| matrix[k * classes + l]).sum();
            let col: u64 = (0..classes).map(|j| matrix[j * classes + k]).sum();
            let hit = matrix[k * classes + k] as f64;
            (
                (row > 0).then(|| hit / row as f64),
                (col > 0).then(|| hit / col as f64),
            )
        })
        .collect()
}

/// `(agreeing, compared)` per worker: how many of their answers match the
/// reference class of the item, out of those on items with one.
pub fn worker_agreement(data: &Dataset, reference: &[Option<u16>]) -> Vec<(u32, u32)> {
    let mut out = vec![(0u32, 0u32); data.workers()];
    for a in data.iter() {
        if let Some(Some(k)) = reference.get(a.item as usize) {
            let e = &mut out[a.worker as usize];
            e.1 += 1;
            if *k == a.label {
                e.0 += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_and_worker_agreement_count_only_items_with_a_reference() {
        use crate::em::Answer;
        let a = |item, worker, label| Answer {
            item,
            worker,
            label,
        };
        let data = Dataset::new(
            2,
            3,
            2,
            &[a(0, 0, 0), a(0, 1, 1), a(1, 0, 1), a(1, 1, 1), a(2, 0, 0)],
        )
        .unwrap();
        let reference = [Some(0), Some(1), None];
        assert_eq!(confusion_against(&data, &reference), vec![1, 1, 0, 2]);
        assert_eq!(worker_agreement(&data, &reference), vec![(2, 2), (1, 2)]);
        let pc = per_class(&confusion_against(&data, &reference), 2);
        assert_eq!(pc[0], (Some(0.5), Some(1.0)));
        assert_eq!(pc[1], (Some(1.0), Some(2.0 / 3.0)));
    }

    #[test]
    fn alpha_is_undefined_without_variation_or_pairs() {
        let same: Vec<&[u16]> = vec![&[1, 1], &[1, 1, 1]];
        assert_eq!(alpha_nominal(3, same), None);
        let lonely: Vec<&[u16]> = vec![&[0], &[1]];
        assert_eq!(alpha_nominal(3, lonely), None);
    }
}
