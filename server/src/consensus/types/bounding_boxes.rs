//! Labelled boxes on an image. Two answers agree by the F1 of their boxes
//! matched one to one per label at IoU >= the schema's threshold. The
//! merged result clusters matching boxes across answers and keeps the
//! clusters found in more than half of the answers, each as the
//! per-coordinate median of its boxes.

use sahel_protocol::api::TaskType;
use serde_json::{Map, Value, json};

use super::{Consensus, TaskKind, answer_object, f1, names, num, only_fields, sha256_ref};

pub const DEFAULT_IOU: f64 = 0.5;
const MAX_BOXES: usize = 1_000;
const MAX_SIDE: u64 = 100_000;

#[derive(Debug)]
pub struct BoundingBoxes {
    labels: Vec<String>,
    iou_threshold: f64,
}

impl BoundingBoxes {
    pub fn parse(obj: &Map<String, Value>) -> Result<BoundingBoxes, String> {
        only_fields(obj, &["labels", "iou_threshold"])?;
        let labels = names(obj, "labels", "label", 1)?;
        let iou_threshold = match obj.get("iou_threshold") {
            None | Some(Value::Null) => DEFAULT_IOU,
            Some(v) => v
                .as_f64()
                .filter(|t| *t > 0.0 && *t <= 1.0)
                .ok_or("\"iou_threshold\" must be a number above 0 and at most 1")?,
        };
        Ok(BoundingBoxes {
            labels,
            iou_threshold,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Bx<'a> {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    label: &'a str,
}

impl Bx<'_> {
    fn iou(&self, o: &Bx<'_>) -> f64 {
        let ix = (self.x + self.w).min(o.x + o.w) - self.x.max(o.x);
        let iy = (self.y + self.h).min(o.y + o.h) - self.y.max(o.y);
        if ix <= 0.0 || iy <= 0.0 {
            return 0.0;
        }
        let inter = ix * iy;
        inter / (self.w * self.h + o.w * o.h - inter)
    }

    fn to_json(self) -> Value {
        json!({"x": num(self.x), "y": num(self.y), "w": num(self.w), "h": num(self.h), "label": self.label})
    }
}

fn boxes(v: &Value) -> Vec<Bx<'_>> {
    v.get("boxes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|b| {
                    Some(Bx {
                        x: b.get("x")?.as_f64()?,
                        y: b.get("y")?.as_f64()?,
                        w: b.get("w")?.as_f64()?,
                        h: b.get("h")?.as_f64()?,
                        label: b.get("label")?.as_str()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Greedy one-to-one matching, best IoU first, same label only.
fn matches(a: &[Bx<'_>], b: &[Bx<'_>], threshold: f64) -> usize {
    let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
    for (i, p) in a.iter().enumerate() {
        for (j, q) in b.iter().enumerate() {
            if p.label == q.label {
                let iou = p.iou(q);
                if iou >= threshold {
                    pairs.push((iou, i, j));
                }
            }
        }
    }
    pairs.sort_by(|x, y| y.0.total_cmp(&x.0).then((x.1, x.2).cmp(&(y.1, y.2))));
    let (mut used_a, mut used_b) = (vec![false; a.len()], vec![false; b.len()]);
    let mut n = 0;
    for (_, i, j) in pairs {
        if !used_a[i] && !used_b[j] {
            used_a[i] = true;
            used_b[j] = true;
            n += 1;
        }
    }
    n
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl TaskKind for BoundingBoxes {
    fn task_type(&self) -> TaskType {
        TaskType::BoundingBoxes
    }

    fn to_json(&self) -> Value {
        json!({ "labels": self.labels, "iou_threshold": self.iou_threshold })
    }

    fn consensus(&self) -> Consensus {
        Consensus::Merge
    }

    fn validate_item(&self, item: &Map<String, Value>) -> Result<(), String> {
        sha256_ref(item.get("image"), "image")?;
        for f in ["width", "height"] {
            match item.get(f).and_then(Value::as_u64) {
                Some(v) if (1..=MAX_SIDE).contains(&v) => {}
                _ => return Err(format!("\"{f}\" must be 1 to {MAX_SIDE} pixels")),
            }
        }
        Ok(())
    }

    fn normalize_answer(
        &self,
        item: Option<&Map<String, Value>>,
        answer: &Value,
    ) -> Result<Value, String> {
        let shape = "{\"boxes\": [{\"x\": 10, \"y\": 20, \"w\": 50, \"h\": 40, \"label\": \"<label>\"}, ...]}";
        let list = answer_object(answer, shape)?
            .get("boxes")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("a bounding-boxes answer is {shape}"))?;
        if list.len() > MAX_BOXES {
            return Err(format!("at most {MAX_BOXES} boxes per answer"));
        }
        let size = |f: &str| item.and_then(|i| i.get(f)).and_then(Value::as_f64);
        let (width, height) = (size("width"), size("height"));
        let mut out = Vec::with_capacity(list.len());
        for (i, b) in list.iter().enumerate() {
            let n = i + 1;
            let field = |f: &str| {
                b.get(f)
                    .and_then(Value::as_f64)
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| {
                        format!("box {n} needs \"{f}\": a non-negative number of pixels")
                    })
            };
            let (x, y, w, h) = (field("x")?, field("y")?, field("w")?, field("h")?);
            if w <= 0.0 || h <= 0.0 {
                return Err(format!("box {n} has an empty area (w {w}, h {h})"));
            }
            if let Some(width) = width
                && x + w > width
            {
                return Err(format!(
                    "box {n} reaches x = {}, past the image's width of {width}",
                    x + w
                ));
            }
            if let Some(height) = height
                && y + h > height
            {
                return Err(format!(
                    "box {n} reaches y = {}, past the image's height of {height}",
                    y + h
                ));
            }
            let label = b
                .get("label")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("box {n} needs a \"label\""))?
                .trim();
            let Some(label) = self.labels.iter().find(|l| *l == label) else {
                return Err(format!(
                    "box {n} has label {label:?}, not one of {:?}",
                    self.labels
                ));
            };
            out.push(Bx { x, y, w, h, label });
        }
        // Canonical order, so equal answers are equal JSON.
        out.sort_by(|a, b| {
            (a.label, a.x, a.y, a.w, a.h)
                .partial_cmp(&(b.label, b.x, b.y, b.w, b.h))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        Ok(json!({ "boxes": out.into_iter().map(Bx::to_json).collect::<Vec<_>>() }))
    }

    fn answers_point_into_item(&self) -> bool {
        true
    }

    fn agreement(&self, a: &Value, b: &Value) -> f64 {
        let (a, b) = (boxes(a), boxes(b));
        f1(matches(&a, &b, self.iou_threshold), a.len(), b.len())
    }

    fn merge(&self, answers: &[Value]) -> Value {
        // A cluster holds at most one box per answer; each box joins the
        // cluster whose first box it overlaps most (at the threshold, same
        // label), else starts one. Answers are taken in order, so the
        // result is deterministic.
        struct Cluster<'a> {
            seed: Bx<'a>,
            members: Vec<(usize, Bx<'a>)>,
        }
        let mut clusters: Vec<Cluster<'_>> = Vec::new();
        for (ai, a) in answers.iter().enumerate() {
            for b in boxes(a) {
                let best = clusters
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| {
                        c.seed.label == b.label && c.members.iter().all(|(m, _)| *m != ai)
                    })
                    .map(|(ci, c)| (ci, c.seed.iou(&b)))
                    .filter(|(_, iou)| *iou >= self.iou_threshold)
                    .max_by(|x, y| x.1.total_cmp(&y.1).then(y.0.cmp(&x.0)));
                match best {
                    Some((ci, _)) => clusters[ci].members.push((ai, b)),
                    None => clusters.push(Cluster {
                        seed: b,
                        members: vec![(ai, b)],
                    }),
                }
            }
        }
        let mut kept: Vec<Bx<'_>> = clusters
            .into_iter()
            .filter(|c| 2 * c.members.len() > answers.len())
            .map(|c| {
                let coord =
                    |f: fn(&Bx<'_>) -> f64| median(c.members.iter().map(|(_, b)| f(b)).collect());
                Bx {
                    x: coord(|b| b.x),
                    y: coord(|b| b.y),
                    w: coord(|b| b.w),
                    h: coord(|b| b.h),
                    label: c.seed.label,
                }
            })
            .collect();
        kept.sort_by(|a, b| {
            (a.label, a.x, a.y, a.w, a.h)
                .partial_cmp(&(b.label, b.x, b.y, b.w, b.h))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        json!({ "boxes": kept.into_iter().map(Bx::to_json).collect::<Vec<_>>() })
    }
}
