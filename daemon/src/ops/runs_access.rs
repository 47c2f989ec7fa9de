//! Operations layer: who may see and touch a run. A run's owner and the admins see all of it;
//! other users see that it exists (name, owner, status, resources, jobs' statuses) but not its
//! configuration, environment or commands, and may not read its logs, stop or delete it.

use super::OpError;
use crate::caller::Caller;
use flotilla_protocol::config::{parse_configuration, RunConfiguration};
use flotilla_protocol::model::Run;

/// Whether `caller` may see the contents of `run` and act on it.
pub fn is_owner_or_admin(caller: &Caller, run: &Run) -> bool {
    caller.admin || caller.uid == run.uid
}

/// Refuses a caller who is neither `run`'s owner nor an admin: `what` is what they tried.
pub fn check_owner(caller: &Caller, run: &Run, what: &str) -> Result<(), OpError> {
    if is_owner_or_admin(caller, run) {
        Ok(())
    } else {
        Err(OpError::Forbidden(format!(
            "run {} belongs to {}; only its owner or an admin can {what} it",
            run.name, run.user
        )))
    }
}

/// `run` as `caller` may see it: whole for its owner and admins, else without its contents;
/// a multi-node run's private key (sealed) is never sent to anyone.
pub fn visible_to(caller: &Caller, mut run: Run) -> Run {
    if let Some(key) = run.cluster_key.as_mut() {
        key.private_sealed.clear();
    }
    if is_owner_or_admin(caller, &run) {
        run
    } else {
        without_contents(run)
    }
}

/// A run without what its owner alone may read: the configuration is replaced by a bare one
/// of the same kind that keeps only the resources and the shape (nodes, replicas); the
/// environment, the caller's environment and the configuration's path are gone.
pub fn without_contents(mut run: Run) -> Run {
    run.configuration = bare_configuration(&run.configuration);
    run.caller_env.clear();
    run.configuration_path = None;
    run.archives.clear();
    run
}

fn bare_configuration(c: &RunConfiguration) -> RunConfiguration {
    let skeleton = match c {
        RunConfiguration::Task(_) => "type: task\ncommands: [\":\"]\n",
        RunConfiguration::Service(_) => "type: service\ncommands: [\":\"]\nport: 80\n",
        RunConfiguration::DevEnvironment(_) => "type: dev-environment\nide: vscode\n",
    };
    let bare = parse_configuration("redacted", skeleton)
        .ok()
        .and_then(|p| p.as_run());
    let Some(mut bare) = bare else {
        // The skeletons above always parse (a unit test holds them to it); should one not,
        // the run is still shown without anything of its owner's.
        let mut c = c.clone();
        c.common_mut().env = Default::default();
        c.common_mut().setup.clear();
        match &mut c {
            RunConfiguration::Task(t) => t.commands.clear(),
            RunConfiguration::Service(s) => s.commands.clear(),
            RunConfiguration::DevEnvironment(e) => e.init.clear(),
        }
        return c;
    };
    bare.common_mut().resources = c.common().resources.clone();
    bare.common_mut().name = c.common().name.clone();
    match (&mut bare, c) {
        (RunConfiguration::Task(b), RunConfiguration::Task(t)) => {
            b.nodes = t.nodes;
            b.commands.clear();
        }
        (RunConfiguration::Service(b), RunConfiguration::Service(s)) => {
            b.replicas = s.replicas;
            b.port = None;
            b.commands.clear();
        }
        (RunConfiguration::DevEnvironment(b), RunConfiguration::DevEnvironment(_)) => b.ide = None,
        _ => {}
    }
    bare
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_protocol::model::RunStatus;
    use flotilla_protocol::Timestamp;

    fn run_of(uid: u32, yaml: &str) -> Run {
        let configuration = parse_configuration("t.yml", yaml)
            .expect("parses")
            .as_run()
            .expect("a run");
        Run {
            id: 1,
            name: "private".into(),
            user: "alice".into(),
            uid,
            status: RunStatus::Running,
            termination_reason: None,
            status_message: Some("running".into()),
            submitted_at: Timestamp::now(),
            finished_at: None,
            configuration_type: configuration.type_name().into(),
            configuration_path: Some("/home/alice/secret.dstack.yml".into()),
            configuration,
            caller_env: [("TOKEN".to_string(), "s3cr3t".to_string())].into(),
            retry_window_started_at: None,
            service: None,
            next_triggered_at: None,
            archives: Vec::new(),
            cluster_key: None,
            deployment_num: 0,
            desired_replicas: Default::default(),
            last_scaled_at: None,
            jobs: Vec::new(),
        }
    }

    fn caller(uid: u32, admin: bool) -> Caller {
        Caller {
            uid,
            user: format!("u{uid}"),
            admin,
        }
    }

    const KINDS: [&str; 3] = [
        "type: task\nenv:\n  - TOKEN=s3cr3t\ncommands:\n  - echo s3cr3t\nnodes: 2\nresources:\n  gpu: 2\n",
        "type: service\nenv:\n  - TOKEN=s3cr3t\ncommands:\n  - serve s3cr3t\nport: 8000\nreplicas: 2\nresources:\n  gpu: 2\n",
        "type: dev-environment\nenv:\n  - TOKEN=s3cr3t\nide: vscode\ninit:\n  - echo s3cr3t\nresources:\n  gpu: 2\n",
    ];

    #[test]
    fn others_see_that_a_run_exists_but_nothing_of_its_contents() {
        for yaml in KINDS {
            let run = run_of(1000, yaml);
            let seen = visible_to(&caller(1001, false), run.clone());
            let text = serde_json::to_string(&seen).expect("JSON");
            assert!(!text.contains("s3cr3t"), "{text}");
            assert!(!text.contains("secret.dstack.yml"), "{text}");
            assert_eq!(seen.name, run.name);
            assert_eq!(seen.user, run.user);
            assert_eq!(seen.status, run.status);
            assert_eq!(seen.status_message, run.status_message);
            assert_eq!(
                seen.configuration.type_name(),
                run.configuration.type_name()
            );
            assert_eq!(
                seen.configuration.common().resources,
                run.configuration.common().resources
            );
            assert_eq!(seen.configuration.nodes(), run.configuration.nodes());
            assert_eq!(seen.configuration.replicas(), run.configuration.replicas());
        }
    }

    #[test]
    fn the_skeletons_parse() {
        for yaml in KINDS {
            let c = run_of(1000, yaml).configuration;
            let bare = bare_configuration(&c);
            assert!(bare.commands().is_empty(), "{bare:?}");
            assert_eq!(bare.common().env, Default::default());
        }
        for skeleton in [
            "type: task\ncommands: [\":\"]\n",
            "type: service\ncommands: [\":\"]\nport: 80\n",
            "type: dev-environment\nide: vscode\n",
        ] {
            let parsed = parse_configuration("redacted", skeleton).expect("parses");
            assert!(parsed.as_run().is_some(), "{skeleton}");
        }
    }

    #[test]
    fn the_owner_and_admins_see_everything() {
        let run = run_of(1000, KINDS[0]);
        assert_eq!(visible_to(&caller(1000, false), run.clone()), run);
        assert_eq!(visible_to(&caller(0, true), run.clone()), run);
    }

    #[test]
    fn acting_on_anothers_run_is_refused_naming_its_owner() {
        let run = run_of(1000, KINDS[0]);
        let err = check_owner(&caller(1001, false), &run, "stop").expect_err("refused");
        assert!(
            matches!(&err, OpError::Forbidden(m) if m.contains("run private belongs to alice"))
        );
        assert!(check_owner(&caller(1000, false), &run, "stop").is_ok());
        assert!(check_owner(&caller(0, true), &run, "stop").is_ok());
    }
}
