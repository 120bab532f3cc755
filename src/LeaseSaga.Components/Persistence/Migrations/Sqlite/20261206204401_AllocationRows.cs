using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace DynamicWorkers.LeaseSaga.Persistence.Migrations.Sqlite
{
    /// <inheritdoc />
    public partial class AllocationRows : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_workers_TrustedInstanceId",
                table: "workers");

            migrationBuilder.DropPrimaryKey(
                name: "PK_pools",
                table: "pools");

            migrationBuilder.DropIndex(
                name: "IX_pools_Name",
                table: "pools");

            migrationBuilder.DropIndex(
                name: "IX_leases_Pool_CurrentState",
                table: "leases");

            migrationBuilder.DropColumn(
                name: "IdleTimeoutToken",
                table: "workers");

            migrationBuilder.DropColumn(
                name: "MaxAgeToken",
                table: "workers");

            migrationBuilder.DropColumn(
                name: "ProvisioningTimeoutToken",
                table: "workers");

            migrationBuilder.DropColumn(
                name: "CorrelationId",
                table: "pools");

            migrationBuilder.DropColumn(
                name: "BackoffToken",
                table: "pools");

            migrationBuilder.DropColumn(
                name: "Book",
                table: "pools");

            migrationBuilder.DropColumn(
                name: "CurrentState",
                table: "pools");

            migrationBuilder.DropColumn(
                name: "Version",
                table: "pools");

            migrationBuilder.DropColumn(
                name: "MaxDurationToken",
                table: "leases");

            migrationBuilder.RenameColumn(
                name: "TrustTimeoutToken",
                table: "workers",
                newName: "TimerToken");

            migrationBuilder.AddColumn<long>(
                name: "LeaseExpiresAt",
                table: "workers",
                type: "INTEGER",
                nullable: true);

            migrationBuilder.AddColumn<long>(
                name: "TimerDueAt",
                table: "workers",
                type: "INTEGER",
                nullable: true);

            migrationBuilder.AddPrimaryKey(
                name: "PK_pools",
                table: "pools",
                column: "Name");

            migrationBuilder.CreateIndex(
                name: "IX_workers_CurrentState_TimerDueAt",
                table: "workers",
                columns: new[] { "CurrentState", "TimerDueAt" });

            migrationBuilder.CreateIndex(
                name: "IX_workers_TrustedInstanceId_Pool_CurrentState",
                table: "workers",
                columns: new[] { "TrustedInstanceId", "Pool", "CurrentState" });

            migrationBuilder.CreateIndex(
                name: "IX_leases_Pool_CurrentState_ReceivedAt",
                table: "leases",
                columns: new[] { "Pool", "CurrentState", "ReceivedAt" });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_workers_CurrentState_TimerDueAt",
                table: "workers");

            migrationBuilder.DropIndex(
                name: "IX_workers_TrustedInstanceId_Pool_CurrentState",
                table: "workers");

            migrationBuilder.DropPrimaryKey(
                name: "PK_pools",
                table: "pools");

            migrationBuilder.DropIndex(
                name: "IX_leases_Pool_CurrentState_ReceivedAt",
                table: "leases");

            migrationBuilder.DropColumn(
                name: "LeaseExpiresAt",
                table: "workers");

            migrationBuilder.DropColumn(
                name: "TimerDueAt",
                table: "workers");

            migrationBuilder.RenameColumn(
                name: "TimerToken",
                table: "workers",
                newName: "TrustTimeoutToken");

            migrationBuilder.AddColumn<Guid>(
                name: "IdleTimeoutToken",
                table: "workers",
                type: "TEXT",
                nullable: true);

            migrationBuilder.AddColumn<Guid>(
                name: "MaxAgeToken",
                table: "workers",
                type: "TEXT",
                nullable: true);

            migrationBuilder.AddColumn<Guid>(
                name: "ProvisioningTimeoutToken",
                table: "workers",
                type: "TEXT",
                nullable: true);

            migrationBuilder.AddColumn<Guid>(
                name: "CorrelationId",
                table: "pools",
                type: "TEXT",
                nullable: false,
                defaultValue: new Guid("00000000-0000-0000-0000-000000000000"));

            migrationBuilder.AddColumn<Guid>(
                name: "BackoffToken",
                table: "pools",
                type: "TEXT",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "Book",
                table: "pools",
                type: "TEXT",
                nullable: false,
                defaultValue: "");

            migrationBuilder.AddColumn<string>(
                name: "CurrentState",
                table: "pools",
                type: "TEXT",
                maxLength: 64,
                nullable: false,
                defaultValue: "");

            migrationBuilder.AddColumn<int>(
                name: "Version",
                table: "pools",
                type: "INTEGER",
                nullable: false,
                defaultValue: 0);

            migrationBuilder.AddColumn<Guid>(
                name: "MaxDurationToken",
                table: "leases",
                type: "TEXT",
                nullable: true);

            migrationBuilder.AddPrimaryKey(
                name: "PK_pools",
                table: "pools",
                column: "CorrelationId");

            migrationBuilder.CreateIndex(
                name: "IX_workers_TrustedInstanceId",
                table: "workers",
                column: "TrustedInstanceId");

            migrationBuilder.CreateIndex(
                name: "IX_pools_Name",
                table: "pools",
                column: "Name",
                unique: true);

            migrationBuilder.CreateIndex(
                name: "IX_leases_Pool_CurrentState",
                table: "leases",
                columns: new[] { "Pool", "CurrentState" });
        }
    }
}
