-- Creates the service database and the services' own login, with only the rights they need, in that
-- database only. Run once as sa by the db-init container of docker-compose.yml (init.sh); safe to re-run.
-- Variables (sqlcmd -v): DbName, DbUser, DbPassword.
--
-- Why these roles: at start-up the services create and migrate their own tables (EF Core migrations in
-- LeaseSaga, Quartz's qrtz_* tables, the simulated cloud's tables), so they need DDL in this database
-- (db_ddladmin) besides reading and writing rows (db_datareader, db_datawriter). They are not db_owner
-- (no permission changes, no dropping the database) and have no server role, no access to other databases.
SET NOCOUNT ON;

IF DB_ID(N'$(DbName)') IS NULL
    CREATE DATABASE [$(DbName)];
GO

IF SUSER_ID(N'$(DbUser)') IS NULL
    CREATE LOGIN [$(DbUser)] WITH PASSWORD = N'$(DbPassword)', DEFAULT_DATABASE = [$(DbName)], CHECK_POLICY = ON;
ELSE
    ALTER LOGIN [$(DbUser)] WITH PASSWORD = N'$(DbPassword)';
GO

USE [$(DbName)];
IF USER_ID(N'$(DbUser)') IS NULL
    CREATE USER [$(DbUser)] FOR LOGIN [$(DbUser)];
ALTER ROLE db_datareader ADD MEMBER [$(DbUser)];
ALTER ROLE db_datawriter ADD MEMBER [$(DbUser)];
ALTER ROLE db_ddladmin ADD MEMBER [$(DbUser)];
GO
