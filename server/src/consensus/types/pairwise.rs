//! Which of two responses is better (RLHF style): `a`, `b` or `tie`,
//! decided by vote.

use sahel_protocol::api::TaskType;
use serde_json::{Map, Value, json};

use super::{Consensus, TaskKind, item_text, only_fields};

#[derive(Debug)]
pub struct Pairwise {
    allow_tie: bool,
    /// The choices, as EM's categories.
    choices: Vec<String>,
}

impl Pairwise {
    pub fn parse(obj: &Map<String, Value>) -> Result<Pairwise, String> {
        only_fields(obj, &["allow_tie"])?;
        let allow_tie = match obj.get("allow_tie") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("\"allow_tie\" must be true or false".into()),
        };
        let mut choices = vec!["a".to_owned(), "b".to_owned()];
        if allow_tie {
            choices.push("tie".to_owned());
        }
        Ok(Pairwise { allow_tie, choices })
    }
}

impl TaskKind for Pairwise {
    fn task_type(&self) -> TaskType {
        TaskType::Pairwise
    }

    fn to_json(&self) -> Value {
        json!({ "allow_tie": self.allow_tie })
    }

    fn consensus(&self) -> Consensus {
        Consensus::Vote
    }

    fn validate_item(&self, item: &Map<String, Value>) -> Result<(), String> {
        for f in ["prompt", "response_a", "response_b"] {
            item_text(item, f)?;
        }
        Ok(())
    }

    fn normalize_answer(
        &self,
        _item: Option<&Map<String, Value>>,
        answer: &Value,
    ) -> Result<Value, String> {
        let choice = answer
            .get("choice")
            .and_then(Value::as_str)
            .ok_or("a pairwise answer is {\"choice\": \"a\"}, \"b\" or \"tie\"")?
            .trim()
            .to_ascii_lowercase();
        if !self.choices.contains(&choice) {
            return Err(if choice == "tie" {
                "this bounty does not allow ties: choose \"a\" or \"b\"".into()
            } else {
                format!(
                    "{choice:?} is not a choice; choose one of {:?}",
                    self.choices
                )
            });
        }
        Ok(json!({ "choice": choice }))
    }

    fn agreement(&self, a: &Value, b: &Value) -> f64 {
        f64::from(u8::from(self.vote_key(a) == self.vote_key(b)))
    }

    fn vote_key(&self, answer: &Value) -> Option<String> {
        answer
            .get("choice")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    fn classes(&self) -> &[String] {
        &self.choices
    }
}
