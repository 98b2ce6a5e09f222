//! `JobCatalogueService`: lists the job types configurations may name.

use tonic::{Request, Response, Status};

use crate::proto::v1::job_catalogue_service_server::JobCatalogueService;
use crate::proto::v1::{JobType, ListJobTypesRequest, ListJobTypesResponse};
use crate::scheduling::job::JobRegistry;

/// Serves the catalogue from the job registry.
pub struct CatalogueApi {
    registry: JobRegistry,
}

impl CatalogueApi {
    /// A catalogue service over `registry`.
    pub fn new(registry: JobRegistry) -> Self {
        Self { registry }
    }
}

#[tonic::async_trait]
impl JobCatalogueService for CatalogueApi {
    async fn list_job_types(
        &self,
        _request: Request<ListJobTypesRequest>,
    ) -> Result<Response<ListJobTypesResponse>, Status> {
        let job_types = self
            .registry
            .all()
            .map(|job| JobType {
                name: job.name().to_string(),
                description: job.description().to_string(),
                work_item: job.work_item().to_string(),
            })
            .collect();
        Ok(Response::new(ListJobTypesResponse { job_types }))
    }
}
