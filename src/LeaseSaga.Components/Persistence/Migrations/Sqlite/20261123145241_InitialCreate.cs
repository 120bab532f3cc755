using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace DynamicWorkers.LeaseSaga.Persistence.Migrations.Sqlite
{
    /// <inheritdoc />
    public partial class InitialCreate : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "instance_lifecycles",
                columns: table => new
                {
                    InstanceId = table.Column<string>(type: "TEXT", maxLength: 200, nullable: false),
                    IdleTimeout = table.Column<TimeSpan>(type: "TEXT", nullable: true),
                    MaxWorkerAge = table.Column<TimeSpan>(type: "TEXT", nullable: true),
                    MaxLeaseDuration = table.Column<TimeSpan>(type: "TEXT", nullable: true),
                    UpdatedAt = table.Column<long>(type: "INTEGER", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_instance_lifecycles", x => x.InstanceId);
                });

            migrationBuilder.CreateTable(
                name: "leases",
                columns: table => new
                {
                    CorrelationId = table.Column<Guid>(type: "TEXT", nullable: false),
                    Version = table.Column<int>(type: "INTEGER", nullable: false),
                    CurrentState = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    InstanceId = table.Column<string>(type: "TEXT", maxLength: 200, nullable: false),
                    ServerThumbprint = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    Pool = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    TaskId = table.Column<string>(type: "TEXT", maxLength: 200, nullable: true),
                    RequestedAt = table.Column<long>(type: "INTEGER", nullable: false),
                    ReceivedAt = table.Column<long>(type: "INTEGER", nullable: false),
                    ResponseAddress = table.Column<string>(type: "TEXT", maxLength: 512, nullable: true),
                    RequestId = table.Column<Guid>(type: "TEXT", nullable: true),
                    AllocationTimeout = table.Column<TimeSpan>(type: "TEXT", nullable: false),
                    Waited = table.Column<bool>(type: "INTEGER", nullable: false),
                    ReleaseRequested = table.Column<bool>(type: "INTEGER", nullable: false),
                    WorkerId = table.Column<Guid>(type: "TEXT", nullable: true),
                    WorkerAddress = table.Column<string>(type: "TEXT", maxLength: 256, nullable: true),
                    WorkerThumbprint = table.Column<string>(type: "TEXT", maxLength: 64, nullable: true),
                    Reused = table.Column<bool>(type: "INTEGER", nullable: false),
                    GrantedAt = table.Column<long>(type: "INTEGER", nullable: true),
                    ExpiresAt = table.Column<long>(type: "INTEGER", nullable: true),
                    RejectReason = table.Column<string>(type: "TEXT", maxLength: 32, nullable: true),
                    RejectDetail = table.Column<string>(type: "TEXT", maxLength: 1024, nullable: true),
                    RevokeReason = table.Column<string>(type: "TEXT", maxLength: 32, nullable: true),
                    EndedAt = table.Column<long>(type: "INTEGER", nullable: true),
                    AllocationTimeoutToken = table.Column<Guid>(type: "TEXT", nullable: true),
                    MaxDurationToken = table.Column<Guid>(type: "TEXT", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_leases", x => x.CorrelationId);
                });

            migrationBuilder.CreateTable(
                name: "pools",
                columns: table => new
                {
                    CorrelationId = table.Column<Guid>(type: "TEXT", nullable: false),
                    Version = table.Column<int>(type: "INTEGER", nullable: false),
                    CurrentState = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    Name = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    HotTarget = table.Column<int>(type: "INTEGER", nullable: false),
                    MaxWorkers = table.Column<int>(type: "INTEGER", nullable: false),
                    Book = table.Column<string>(type: "TEXT", nullable: false),
                    ConsecutiveFailures = table.Column<int>(type: "INTEGER", nullable: false),
                    BackoffUntil = table.Column<long>(type: "INTEGER", nullable: true),
                    BackoffToken = table.Column<Guid>(type: "TEXT", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_pools", x => x.CorrelationId);
                });

            migrationBuilder.CreateTable(
                name: "workers",
                columns: table => new
                {
                    CorrelationId = table.Column<Guid>(type: "TEXT", nullable: false),
                    Version = table.Column<int>(type: "INTEGER", nullable: false),
                    CurrentState = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    Pool = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    CreatedAt = table.Column<long>(type: "INTEGER", nullable: false),
                    ProvisionedAt = table.Column<long>(type: "INTEGER", nullable: true),
                    Address = table.Column<string>(type: "TEXT", maxLength: 256, nullable: true),
                    AgentThumbprint = table.Column<string>(type: "TEXT", maxLength: 64, nullable: true),
                    TrustedInstanceId = table.Column<string>(type: "TEXT", maxLength: 200, nullable: true),
                    TrustedThumbprint = table.Column<string>(type: "TEXT", maxLength: 64, nullable: true),
                    CurrentLeaseId = table.Column<Guid>(type: "TEXT", nullable: true),
                    LastLeaseId = table.Column<Guid>(type: "TEXT", nullable: true),
                    LastLeaseEndedAt = table.Column<long>(type: "INTEGER", nullable: true),
                    LeaseCount = table.Column<int>(type: "INTEGER", nullable: false),
                    IdleDeadline = table.Column<long>(type: "INTEGER", nullable: true),
                    MaxAgeDeadline = table.Column<long>(type: "INTEGER", nullable: true),
                    TrustStartedAt = table.Column<long>(type: "INTEGER", nullable: true),
                    ReapStartedAt = table.Column<long>(type: "INTEGER", nullable: true),
                    ReapReason = table.Column<string>(type: "TEXT", maxLength: 32, nullable: true),
                    ProvisioningTimeoutToken = table.Column<Guid>(type: "TEXT", nullable: true),
                    TrustTimeoutToken = table.Column<Guid>(type: "TEXT", nullable: true),
                    IdleTimeoutToken = table.Column<Guid>(type: "TEXT", nullable: true),
                    MaxAgeToken = table.Column<Guid>(type: "TEXT", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_workers", x => x.CorrelationId);
                });

            migrationBuilder.CreateIndex(
                name: "IX_leases_Pool_CurrentState",
                table: "leases",
                columns: new[] { "Pool", "CurrentState" });

            migrationBuilder.CreateIndex(
                name: "IX_pools_Name",
                table: "pools",
                column: "Name",
                unique: true);

            migrationBuilder.CreateIndex(
                name: "IX_workers_Pool_CurrentState",
                table: "workers",
                columns: new[] { "Pool", "CurrentState" });

            migrationBuilder.CreateIndex(
                name: "IX_workers_TrustedInstanceId",
                table: "workers",
                column: "TrustedInstanceId");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "instance_lifecycles");

            migrationBuilder.DropTable(
                name: "leases");

            migrationBuilder.DropTable(
                name: "pools");

            migrationBuilder.DropTable(
                name: "workers");
        }
    }
}
