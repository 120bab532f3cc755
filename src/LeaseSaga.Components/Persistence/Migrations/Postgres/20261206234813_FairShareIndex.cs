using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace DynamicWorkers.LeaseSaga.Persistence.Migrations.Postgres
{
    /// <inheritdoc />
    public partial class FairShareIndex : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateIndex(
                name: "IX_leases_InstanceId_Pool_CurrentState",
                table: "leases",
                columns: new[] { "InstanceId", "Pool", "CurrentState" });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_leases_InstanceId_Pool_CurrentState",
                table: "leases");
        }
    }
}
