//! The server's start from its data directory: tenants added through the
//! API, their jobs, and the jobs that were running, which resume from their
//! checkpoints.

use super::*;

impl Server {
    /// Loads the data directory: finishes removals, adds the tenants of
    /// the tenants file and those added through the API, and the jobs.
    pub(super) fn load(&self, file_tenants: Vec<Tenant>) -> Result<(), ServeError> {
        let area = self.data.join("tenants");
        let data_err = |path: &Path| {
            let path = path.to_owned();
            move |error| ServeError::Data { path, error }
        };
        let names = persist::subdirs(&area).map_err(data_err(&area))?;
        for name in &names {
            let dir = area.join(name);
            if dir.join(persist::REMOVING).exists() {
                tracing::info!(
                    target: "sluice::serve",
                    "tenant `{name}` was being removed when the server stopped: its data is deleted"
                );
                persist::remove_dir(&dir).map_err(data_err(&dir))?;
            }
        }
        for t in file_tenants {
            self.make_tenant_dirs(&t.name)
                .map_err(data_err(&self.tenant_dir(&t.name)))?;
            write_lock(&self.tenants).insert(t.name.clone(), Arc::new(t));
        }
        for name in &names {
            let path = area.join(name).join(persist::TENANT_RECORD);
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(data_err(&path)(e)),
            };
            if self.has_tenant(name) {
                tracing::warn!(
                    target: "sluice::serve",
                    "tenant `{name}` is in the tenants file, which wins over the one added through                      the API ({} is not used)",
                    path.display()
                );
                continue;
            }
            let tenant =
                self.tenant_from_record(name, &bytes)
                    .map_err(|message| ServeError::Record {
                        path: path.clone(),
                        message,
                    })?;
            self.make_tenant_dirs(name)
                .map_err(data_err(&self.tenant_dir(name)))?;
            write_lock(&self.tenants).insert(name.clone(), Arc::new(tenant));
        }
        let tenants: Vec<Arc<Tenant>> = read_lock(&self.tenants).values().cloned().collect();
        let mut next = 0;
        for t in &tenants {
            let jobs = self.tenant_dir(&t.name).join("jobs");
            for id in persist::subdirs(&jobs).map_err(data_err(&jobs))? {
                if let Some(seq) = self.load_job(t, &id) {
                    next = next.max(seq + 1);
                }
            }
        }
        // Numbering goes on where it was.
        self.id_counter
            .store(next, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The tenant a `tenant.json` in directory `name` describes, or why it
    /// is unusable.
    fn tenant_from_record(&self, name: &str, bytes: &[u8]) -> Result<Tenant, String> {
        let config: TenantConfig =
            serde_json::from_slice(bytes).map_err(|e| format!("not a tenant: {e}"))?;
        let tenant = config
            .resolve()
            .map_err(|(field, m)| format!("field `{field}`: {m}"))?;
        if tenant.name != name {
            return Err(format!(
                "names tenant {:?}, but it is in the directory of {name:?}",
                tenant.name
            ));
        }
        let taken = self
            .settings
            .admin
            .is_some_and(|a| tenant::same_hash(&a, &tenant.token_sha256))
            || read_lock(&self.tenants)
                .values()
                .any(|t| tenant::same_hash(&t.token_sha256, &tenant.token_sha256));
        if taken {
            return Err(
                "field `token_sha256`: another tenant or the admin has the same token; give                  each its own"
                    .into(),
            );
        }
        Ok(tenant)
    }

    /// Loads job `id` of `tenant` from its record, if it has one (a
    /// submission cut short has none, and is left out); returns its number.
    /// A job to run again is kept for [`Server::start_restored`]; one whose
    /// file no longer passes the checks fails.
    fn load_job(&self, tenant: &Tenant, id: &str) -> Option<u64> {
        let dir = self.tenant_dir(&tenant.name).join("jobs").join(id);
        let warn = |what: &str| {
            tracing::warn!(
                target: "sluice::serve",
                "job {id} of tenant `{}` is left out: {what}",
                tenant.name
            );
        };
        let bytes = match std::fs::read(dir.join(persist::JOB_RECORD)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                warn(&format!("cannot read its record: {e}"));
                return None;
            }
        };
        let record: JobRecord = match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(e) => {
                warn(&format!("its record is unreadable: {e}"));
                return None;
            }
        };
        if record.id != id || record.tenant != tenant.name {
            warn(&format!(
                "its record is of job {} of tenant `{}`",
                record.id, record.tenant
            ));
            return None;
        }
        let text = match std::fs::read_to_string(dir.join(persist::JOB_FILE)) {
            Ok(text) => text,
            Err(e) => {
                warn(&format!("cannot read its job file: {e}"));
                return None;
            }
        };
        let engine_name = format!("{}/{id}", tenant.name);
        let who = Identity {
            id: id.to_string(),
            seq: record.seq,
            tenant: tenant.name.clone(),
            display_name: record.name.clone(),
            engine_name: engine_name.clone(),
            submitted: SystemTime::UNIX_EPOCH + Duration::from_millis(record.submitted_ms),
            dir,
        };
        let entry = JobEntry::restored(who, self.capture.register(&engine_name), &record, bytes);
        if matches!(record.state, RecordState::Running | RecordState::Paused) {
            match self.recipe(tenant, id, &text) {
                Ok((recipe, _)) => lock(&self.restored).push((entry.clone(), recipe)),
                Err(e) => {
                    let reason = format!("cannot start again after the server's restart: {e}");
                    tracing::error!(target: "sluice::serve", job = %engine_name, "{reason}");
                    if let Err(e) = entry.cannot_restore(reason) {
                        tracing::warn!(
                            target: "sluice::serve",
                            job = %engine_name,
                            "cannot write the job's record: {e}"
                        );
                    }
                }
            }
        }
        lock(&self.jobs).insert(id.to_string(), entry);
        Some(record.seq)
    }

    /// Starts the jobs loaded from their records that were running (they
    /// resume from their checkpoints) or paused (they wait for a resume).
    /// Call it on the async runtime.
    pub fn start_restored(&self) {
        let restored = std::mem::take(&mut *lock(&self.restored));
        for (entry, recipe) in restored {
            tracing::info!(
                target: "sluice::serve",
                job = %entry.who.engine_name,
                "started again after the server's restart"
            );
            tokio::spawn(job::supervise(
                entry,
                None,
                recipe,
                self.settings.breaker.clone(),
            ));
        }
    }
}
